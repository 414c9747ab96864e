// The one client of the orchestrator's API: the bearer key (session storage
// only), JSON and error decoding, and an SSE reader over fetch (EventSource
// cannot send an Authorization header).

const KEY = 'llorch.api_key';

export function getKey() {
  try { return sessionStorage.getItem(KEY) || ''; } catch { return ''; }
}

export function setKey(k) {
  try {
    if (k) sessionStorage.setItem(KEY, k);
    else sessionStorage.removeItem(KEY);
  } catch { /* storage disabled: the key lives as long as the page */ }
}

// APIError is a non-2xx answer: status, code (UNAUTHORIZED, FORBIDDEN, ...)
// and the server's message.
export class APIError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

// Handlers the app installs: onUnauthorized on a 401 (the key is wrong or
// gone), onForbidden on a 403 (the key lacks the role).
export const hooks = { onUnauthorized: () => {}, onForbidden: () => {} };

function headers(extra) {
  const h = new Headers(extra || {});
  const k = getKey();
  if (k) h.set('Authorization', 'Bearer ' + k);
  return h;
}

async function errorOf(res) {
  let code = '', message = '';
  try {
    const body = await res.json();
    const e = body && body.error;
    if (e) {
      code = String(e.code || e.type || '');
      message = String(e.message || '');
      if (Array.isArray(e.fields) && e.fields.length) {
        message += ': ' + e.fields.map((f) => `${f.field} ${f.message}`).join('; ');
      }
    }
  } catch { /* not JSON */ }
  return new APIError(res.status, code, message || `${res.status} ${res.statusText}`);
}

// request sends one call and returns the Response when it is 2xx; a 401 or
// 403 also runs the hooks (unless quiet lists the status). It throws
// APIError otherwise, or the fetch's own error (network, abort).
export async function request(path, opts = {}) {
  const init = { method: opts.method || 'GET', headers: headers(opts.headers), signal: opts.signal, cache: 'no-store' };
  if (opts.json !== undefined) {
    init.body = JSON.stringify(opts.json);
    init.headers.set('Content-Type', 'application/json');
  } else if (opts.body !== undefined) {
    init.body = opts.body;
    init.headers.set('Content-Type', 'text/plain; charset=utf-8');
  }
  const res = await fetch(path, init);
  if (res.ok) return res;
  const err = await errorOf(res);
  const quiet = opts.quiet || [];
  if (res.status === 401 && !quiet.includes(401)) hooks.onUnauthorized(err);
  if (res.status === 403 && !quiet.includes(403)) hooks.onForbidden(err);
  throw err;
}

// get/send return the decoded JSON body (null when there is none).
export async function get(path, opts) {
  const res = await request(path, opts);
  return res.status === 204 ? null : res.json();
}

export async function send(method, path, json, opts = {}) {
  const res = await request(path, { ...opts, method, json });
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// sse reads a text/event-stream answer and calls onEvent({event, data, id})
// for each event; it resolves when the stream ends and rejects on errors
// (an APIError before the stream, a network error or AbortError during it).
// Comment lines (": ping") call onEvent with {comment}.
export async function sse(path, onEvent, opts = {}) {
  const res = await request(path, { ...opts, headers: { Accept: 'text/event-stream', ...(opts.headers || {}) } });
  await readSSE(res.body, onEvent);
}

export async function readSSE(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let ev = { event: 'message', data: [], id: '' };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
      if (line === '') {
        if (ev.data.length) onEvent({ event: ev.event, data: ev.data.join('\n'), id: ev.id });
        ev = { event: 'message', data: [], id: ev.id };
        continue;
      }
      if (line[0] === ':') { onEvent({ comment: line.slice(1).trim() }); continue; }
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let v = c < 0 ? '' : line.slice(c + 1);
      if (v[0] === ' ') v = v.slice(1);
      if (field === 'event') ev.event = v;
      else if (field === 'data') ev.data.push(v);
      else if (field === 'id') ev.id = v;
    }
  }
}

export const enc = encodeURIComponent;
