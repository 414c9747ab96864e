// The dashboard's entry: asks for an API key when the orchestrator wants one
// (GET /v2/meta/auth, before any other request), then routes by hash:
// #/overview (default), #/tasks, #/tasks/<id>, #/playground, #/routing.

import { get, getKey, setKey, hooks, APIError } from './api.js';
import { $, setError, clearErrors } from './dom.js';
import * as stats from './stats.js';
import * as overview from './overview.js';
import * as tasks from './tasks.js';
import * as playground from './playground.js';
import * as routing from './routing.js';

const view = $('#view');
const login = $('#login');
const loginError = $('#login-error');
const logout = $('#logout');
let keysRequired = false;
let unmount = null;
let ready = false;

function route() {
  const hash = location.hash || '#/overview';
  const m = /^#\/([a-z]+)(?:\/(.+))?$/.exec(hash) || [];
  const page = m[1] || 'overview';
  const arg = m[2] ? decodeURIComponent(m[2]) : '';
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === '#/' + page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!ready) return;
  if (unmount) { unmount(); unmount = null; }
  view.replaceChildren();
  switch (page) {
    case 'tasks':
      unmount = arg ? tasks.mountTask(view, arg) : tasks.mountList(view);
      document.title = arg ? `Task ${arg} — llorch` : 'Tasks — llorch';
      break;
    case 'playground':
      unmount = playground.mount(view);
      document.title = 'Playground — llorch';
      break;
    case 'routing':
      unmount = routing.mount(view);
      document.title = 'Routing — llorch';
      break;
    default:
      unmount = overview.mount(view);
      document.title = 'Overview — llorch';
  }
}

function showLogin(message) {
  ready = false;
  stats.stop();
  if (unmount) { unmount(); unmount = null; }
  view.replaceChildren();
  view.hidden = true;
  clearErrors();
  loginError.textContent = message || '';
  loginError.hidden = !message;
  login.hidden = false;
  logout.hidden = true;
  $('#key').value = '';
  $('#key').focus();
}

function start() {
  login.hidden = true;
  view.hidden = false;
  logout.hidden = !getKey();
  ready = true;
  route();
}

hooks.onUnauthorized = () => {
  setKey('');
  showLogin('The API key was rejected (401). Enter a valid key.');
};
hooks.onForbidden = () => {
  setError('auth', 'This API key lacks the admin role: the overview, the task list of all clients and routing need an admin key (the playground works with a user key).');
};

login.addEventListener('submit', async (e) => {
  e.preventDefault();
  const key = $('#key').value.trim();
  if (!key) return;
  const btn = $('#login-submit');
  btn.disabled = true;
  loginError.hidden = true;
  setKey(key);
  try {
    // A user-role call: any valid key passes (a user key then sees 403s on
    // admin pages, with a message).
    await get('/v2/meta/capabilities', { quiet: [401] });
    start();
  } catch (err) {
    setKey('');
    loginError.textContent = err instanceof APIError && err.status === 401
      ? 'The API key was rejected (401). Enter a valid key.'
      : `Cannot sign in: ${err.message || err}`;
    loginError.hidden = false;
    $('#key').select();
  } finally {
    btn.disabled = false;
  }
});

logout.addEventListener('click', () => {
  setKey('');
  if (keysRequired) showLogin('');
  else { logout.hidden = true; }
});

$('#error-close').addEventListener('click', clearErrors);
window.addEventListener('hashchange', route);

(async () => {
  route(); // highlight the nav link
  try {
    const info = await get('/v2/meta/auth', { quiet: [401, 403] });
    keysRequired = !!info?.keys_required;
  } catch (e) {
    // An orchestrator without /v2/meta/auth: go on; a 401 later asks for
    // a key.
    keysRequired = e instanceof APIError && e.status === 401;
  }
  if (keysRequired && !getKey()) showLogin('');
  else start();
})();
