// DOM helpers. Everything that comes from the API goes into the page as text
// (textContent, attribute values), never as HTML.

// h builds an element: h('td', {class: 'state'}, 'healthy', child...).
// Attributes: class, for (htmlFor), on<event> (listeners), dataset (object),
// hidden/disabled/checked/value (properties); others via setAttribute. No
// style: set el.style.x from code (the CSP allows no style attributes).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'hidden' || k === 'disabled' || k === 'checked' || k === 'value' || k === 'selected') el[k] = v;
      else if (k === 'style') throw new Error('dom: no style attributes (CSP)');
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// setText sets an element's text only when it changed (no needless layout,
// and a screen reader is not told about unchanged text).
export function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// syncRows keeps tbody's rows equal to items, in order, by key: rows of
// keys that went are removed, new ones built, and every row updated in
// place (so focus on a button in a row survives a refresh).
export function syncRows(tbody, items, keyOf, build, update) {
  const old = new Map();
  for (const tr of tbody.rows) old.set(tr.dataset.key, tr);
  let at = tbody.firstElementChild;
  for (const item of items) {
    const key = String(keyOf(item));
    let tr = old.get(key);
    if (tr) old.delete(key);
    else {
      tr = build(item);
      tr.dataset.key = key;
    }
    update(tr, item);
    if (tr !== at) tbody.insertBefore(tr, at);
    else at = at.nextElementSibling;
  }
  for (const tr of old.values()) tr.remove();
}

// A table with a caption (for screen readers), a header row and an empty
// body; empty is the text shown when it has no rows.
export function table(id, caption, headers, empty) {
  const tbody = h('tbody');
  const t = h('table', { id, class: 'data' },
    h('caption', { class: 'sr' }, caption),
    h('thead', null, h('tr', null, headers.map(([text, cls]) => h('th', { scope: 'col', class: cls }, text)))),
    tbody);
  const wrap = h('div', { class: 'scroll' }, t, h('p', { class: 'empty', hidden: true }, empty));
  return { wrap, table: t, tbody, setEmpty(isEmpty) { wrap.lastChild.hidden = !isEmpty; } };
}

// Relative times: <time data-rel> elements whose text a ticker refreshes
// once a second ("3 s ago"), with the ISO time as title.
export function relTime(iso) {
  const el = h('time', { 'data-rel': '' });
  setRelTime(el, iso);
  return el;
}

export function setRelTime(el, iso) {
  const t = iso ? Date.parse(iso) : NaN;
  if (el.dateTime !== (iso || '')) {
    el.dateTime = iso || '';
    el.title = Number.isNaN(t) ? '' : new Date(t).toISOString();
  }
  setText(el, Number.isNaN(t) ? '—' : ago(t));
}

export function ago(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < -1) return 'in ' + span(-s);
  if (s <= 1) return 'now';
  return span(s) + ' ago';
}

function span(s) {
  if (s < 90) return s + ' s';
  if (s < 90 * 60) return Math.round(s / 60) + ' min';
  if (s < 36 * 3600) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

setInterval(() => {
  if (document.hidden) return;
  for (const el of document.querySelectorAll('time[data-rel]')) setRelTime(el, el.dateTime);
}, 1000);

// Numbers and sizes.
export function fmtNum(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return Number(v).toLocaleString('en-US', { maximumFractionDigits: digits });
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms >= 10000) return (ms / 1000).toFixed(1) + ' s';
  if (ms >= 1000) return (ms / 1000).toFixed(2) + ' s';
  if (ms >= 10) return Math.round(ms) + ' ms';
  return ms.toFixed(2) + ' ms';
}

export function fmtBytes(b) {
  if (!b) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + ' ' + u[i];
}

// Toast: the result of an action, for a few seconds.
let toastTimer = 0;
export function toast(text, bad = false) {
  const el = $('#toast');
  el.textContent = text;
  el.classList.toggle('bad', bad);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; el.textContent = ''; }, 8000);
}

// The global error banner (#error): one line per source (key), hidden when
// there is none. A source clears its line when it works again.
const errors = new Map();
export function setError(key, text) {
  if (text) errors.set(key, text);
  else if (!errors.delete(key)) return;
  $('#error-text').textContent = [...errors.values()].join(' — ');
  $('#error').hidden = errors.size === 0;
}

export function clearErrors() {
  for (const k of [...errors.keys()]) setError(k, '');
}

// failed reports an API call's error under key, unless it needs no banner
// (an abort, or a 401: the login form says it).
export function failed(key, what, e) {
  if (!e || e.name === 'AbortError') return;
  if (e.status === 401) return;
  if (e.status === 403) {
    setError('auth', 'This API key lacks the admin role: the overview, the task list of all clients and routing need an admin key (the playground works with a user key).');
    return;
  }
  setError(key, `${what}: ${e.message || e}`);
}

// confirmDialog asks in dialog#confirm; resolves true on OK. With field
// ({label, value, min, max}) it also asks for a number and resolves to it
// (null on cancel).
export function confirmDialog(text, okLabel = 'OK', field = null) {
  const dlg = $('#confirm');
  const ok = $('#confirm-ok');
  const cancel = $('#confirm-cancel');
  const input = $('#confirm-input');
  $('#confirm-text').textContent = text;
  ok.textContent = okLabel;
  $('#confirm-field').hidden = !field;
  if (field) {
    $('#confirm-label').textContent = field.label;
    input.value = String(field.value);
    input.min = String(field.min ?? 0);
    input.max = String(field.max ?? '');
  }
  return new Promise((resolve) => {
    const done = (yes) => {
      ok.removeEventListener('click', onOK);
      cancel.removeEventListener('click', onCancel);
      dlg.removeEventListener('cancel', onCancel);
      input.removeEventListener('keydown', onKey);
      if (dlg.open) dlg.close();
      if (!field) resolve(yes);
      else resolve(yes ? Number(input.value) : null);
    };
    const onOK = () => {
      if (field && !input.checkValidity()) { input.reportValidity(); return; }
      done(true);
    };
    const onCancel = (e) => { e.preventDefault(); done(false); };
    const onKey = (e) => { if (e.key === 'Enter') { e.preventDefault(); onOK(); } };
    ok.addEventListener('click', onOK);
    cancel.addEventListener('click', onCancel);
    dlg.addEventListener('cancel', onCancel);
    input.addEventListener('keydown', onKey);
    dlg.showModal();
    (field ? input : cancel).focus();
  });
}

// refresher wraps an async load: calls while one runs coalesce into one
// more run after it, and runs start at least gapMs apart.
export function refresher(fn, gapMs = 0) {
  let running = false, again = false, last = 0, timer = 0, dead = false;
  const run = async () => {
    if (dead) return;
    const wait = last + gapMs - Date.now();
    if (wait > 0) { clearTimeout(timer); timer = setTimeout(run, wait); return; }
    if (running) { again = true; return; }
    running = true;
    last = Date.now();
    try { await fn(); } finally {
      running = false;
      if (again) { again = false; run(); }
    }
  };
  run.stop = () => { dead = true; clearTimeout(timer); };
  return run;
}

// textSink appends streamed text to el at most once per frame (a token at a
// time would lay the page out thousands of times); flush() writes what is
// pending at once. after() runs after each write.
export function textSink(el, after = () => {}) {
  let pending = '';
  let frame = 0;
  const flush = () => {
    cancelAnimationFrame(frame);
    frame = 0;
    if (pending) { el.append(pending); pending = ''; after(); }
  };
  return {
    add(s) {
      pending += s;
      if (!frame) frame = requestAnimationFrame(flush);
    },
    flush,
  };
}
