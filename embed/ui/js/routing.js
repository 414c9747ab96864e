// #/routing: the routing script in force (Tengo; GET /v2/routing), checked by the orchestrator
// (POST /v2/routing/check: compile, trial, replay over a snapshot taken
// now), saved after a check and a confirmation, or removed.

import { get, send } from './api.js';
import { h, setText, toast, failed, setError, confirmDialog } from './dom.js';

const NONE = `// No routing script is loaded: the built-in policy decides. Below is that
// policy written as a script, to start from: edit it, Check it, and Save to
// load it. \`llorch orchestrate routing examples\` prints more examples.
`;

export function mount(view) {
  const source = h('textarea', { id: 'rt-source', class: 'code', rows: '24', spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off', wrap: 'off' });
  const check = h('button', { type: 'button', id: 'rt-check' }, 'Check');
  const save = h('button', { type: 'button', id: 'rt-save' }, 'Save');
  const reset = h('button', { type: 'button', id: 'rt-reset', class: 'quiet danger' }, 'Reset to built-in');
  const status = h('span', { id: 'rt-status', role: 'status' });
  const note = h('p', { class: 'muted', id: 'rt-note' });
  const result = h('pre', { id: 'rt-result', class: 'text', tabindex: '0', 'aria-label': 'Check result' });

  view.append(
    h('h1', null, 'Routing'),
    note,
    h('div', { class: 'cols wide-left' },
      h('section', { class: 'panel' },
        h('label', { for: 'rt-source' }, 'Routing script (Tengo)'), source,
        h('div', { class: 'row' }, check, save, reset, status)),
      h('section', { class: 'panel', 'aria-labelledby': 'h-rt-result' },
        h('h2', { id: 'h-rt-result' }, 'Check and replay'), result)));

  let busy = false;
  let loaded = false; // a script is loaded (reset has something to remove)
  const setBusy = (b) => { busy = b; check.disabled = save.disabled = b; reset.disabled = b || !loaded; };

  async function load() {
    setBusy(true);
    try {
      // GET /v2/routing answers 200 whether a script is loaded or not (GET
      // /v2/routing/script is a 404 when none is, a failed request in the
      // console).
      const r = await get('/v2/routing');
      loaded = !!r.loaded;
      if (loaded) {
        source.value = r.source || '';
        setText(note, `The active script${r.name ? ` (${r.name})` : ''} decides admission and placement before the built-in scheduler.`);
        setText(status, 'loaded');
      } else {
        source.value = NONE + (r.default ? '\n' + r.default : '');
        setText(note, 'No routing script is loaded: the built-in policy decides.');
        setText(status, 'none loaded');
      }
      setError('routing', '');
    } catch (e) {
      failed('routing', 'Cannot read the routing script', e);
    } finally {
      setBusy(false);
    }
  }

  // runCheck asks the orchestrator to check the editor's script; it shows
  // and returns the answer (null when the call failed).
  async function runCheck() {
    setText(status, 'checking…');
    try {
      const r = await send('POST', '/v2/routing/check', undefined, { body: source.value });
      const parts = [];
      if (r.error) parts.push('Error:\n' + r.error);
      if (r.check) parts.push('Check (sample snapshot):\n' + r.check);
      if (r.replay) parts.push('Replay (this orchestrator, now):\n' + r.replay);
      result.textContent = parts.join('\n\n') || (r.ok ? 'OK' : 'The check failed without a message.');
      result.classList.toggle('bad', !r.ok);
      setText(status, r.ok ? 'check passed' : 'check failed');
      return r;
    } catch (e) {
      result.textContent = e.message || String(e);
      result.classList.add('bad');
      setText(status, 'check failed');
      failed('routing', 'Cannot check the script', e);
      return null;
    }
  }

  check.addEventListener('click', async () => {
    if (busy) return;
    setBusy(true);
    try { await runCheck(); } finally { setBusy(false); }
  });

  save.addEventListener('click', async () => {
    if (busy) return;
    setBusy(true);
    try {
      const r = await runCheck();
      if (!r || !r.ok) { toast('Not saved: the script does not pass its check.', true); return; }
      if (!(await confirmDialog('Load this script? It decides routing from now on, for every new task.', 'Load script'))) {
        setText(status, 'not saved');
        return;
      }
      const res = await send('PUT', '/v2/routing/script', undefined, { body: source.value });
      setText(status, 'saved');
      toast(`Routing script loaded (${res?.bytes ?? source.value.length} bytes).`);
      await load();
    } catch (e) {
      setText(status, 'save failed');
      toast(`Saving failed: ${e.message}`, true);
    } finally { setBusy(false); }
  });

  reset.addEventListener('click', async () => {
    if (busy) return;
    if (!(await confirmDialog('Remove the routing script? The built-in policy decides from now on.', 'Remove script'))) return;
    setBusy(true);
    try {
      await send('DELETE', '/v2/routing/script');
      toast('Routing script removed: the built-in policy decides.');
      result.textContent = '';
      await load();
    } catch (e) {
      setText(status, 'reset failed');
      toast(`Reset failed: ${e.message}`, true);
    } finally { setBusy(false); }
  });

  load();
  return () => setError('routing', '');
}
