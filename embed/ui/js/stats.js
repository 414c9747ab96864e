// The stats hub: the last 15 minutes of fleet samples, loaded once from
// GET /v2/stats?window=15m and then appended live from GET /v2/stats/stream
// (SSE). One hub for the page; views subscribe to it. It stops while the
// page is hidden and reconnects with backoff when the stream drops (reloading
// the window, so a gap fills in).

import { get, sse, APIError } from './api.js';

const SPAN_MS = 15 * 60 * 1000;
const WORKERS = 10;

export const data = {
  t: [], // Unix ms
  tps: [], qi: [], qb: [], running: [], p50: [], p95: [],
  ok: [], rejected: [], cancelled: [], failed: [],
  workers: new Map(), // worker id -> tokens/s column (aligned with t)
  last: null, // the newest sample whole
};

const subs = new Set();
let started = false;
let ctrl = null;
let backoff = 1000;
let retryTimer = 0;
let stopped = false; // a 401/403: no retry until start() again
const state = { live: false, error: '' };

// subscribe calls fn(kind) on every change: 'load' (the window was
// replaced) or 'sample' (one sample appended). It returns the unsubscribe.
export function subscribe(fn) {
  subs.add(fn);
  return () => subs.delete(fn);
}

export function status() { return state; }

function emit(kind) {
  for (const fn of subs) {
    try { fn(kind); } catch (e) { reportError(e); }
  }
}

function reportError(e) {
  // A bug in a view must not stop the stream; show it where it is seen.
  setTimeout(() => { throw e; });
}

const num = (v) => (v === null || v === undefined ? null : v);

function load(st) {
  data.t = st.t || [];
  data.tps = (st.tokens_per_second || []).map(num);
  data.qi = st.queued_interactive || [];
  data.qb = st.queued_batch || [];
  data.running = st.running || [];
  data.p50 = (st.ttft_p50_ms || []).map(num);
  data.p95 = (st.ttft_p95_ms || []).map(num);
  data.ok = st.ok || [];
  data.rejected = st.rejected || [];
  data.cancelled = st.cancelled || [];
  data.failed = st.failed || [];
  data.workers = new Map();
  for (const w of st.workers || []) data.workers.set(w.worker_id, (w.tokens_per_second || []).map((v) => v ?? 0));
  data.last = st.last || null;
  emit('load');
}

function append(s) {
  const n = data.t.length;
  if (n && s.t <= data.t[n - 1]) return; // already had it (from the window)
  data.t.push(s.t);
  data.tps.push(num(s.tokens_per_second));
  data.qi.push(s.queued_interactive || 0);
  data.qb.push(s.queued_batch || 0);
  data.running.push(s.running || 0);
  data.p50.push(num(s.ttft_p50_ms));
  data.p95.push(num(s.ttft_p95_ms));
  data.ok.push(s.ok || 0);
  data.rejected.push(s.rejected || 0);
  data.cancelled.push(s.cancelled || 0);
  data.failed.push(s.failed || 0);
  const ws = s.workers || {};
  for (const [id, col] of data.workers) col.push(ws[id] || 0);
  for (const [id, v] of Object.entries(ws)) {
    if (!data.workers.has(id)) {
      const col = new Array(n).fill(0);
      col.push(v);
      data.workers.set(id, col);
    }
  }
  trim(s.t - SPAN_MS);
  data.last = s;
  emit('sample');
}

function trim(from) {
  let k = 0;
  while (k < data.t.length && data.t[k] < from) k++;
  if (!k) return;
  for (const name of ['t', 'tps', 'qi', 'qb', 'running', 'p50', 'p95', 'ok', 'rejected', 'cancelled', 'failed']) {
    data[name].splice(0, k);
  }
  for (const [id, col] of data.workers) {
    col.splice(0, k);
    if (!col.some((v) => v)) data.workers.delete(id);
  }
}

function setLive(live, error = '') {
  state.live = live;
  state.error = error;
  emit('status');
}

// start runs the hub (again after a stop); views call it when they mount.
export function start() {
  stopped = false;
  if (started) return;
  started = true;
  run();
}

// stop ends the stream (logout).
export function stop() {
  started = false;
  stopped = true;
  clearTimeout(retryTimer);
  if (ctrl) ctrl.abort();
  ctrl = null;
}

async function run() {
  clearTimeout(retryTimer);
  if (!started || document.hidden) return;
  const c = new AbortController();
  ctrl = c;
  try {
    load(await get(`/v2/stats?window=15m&workers=${WORKERS}`, { signal: c.signal }));
    await sse(`/v2/stats/stream?workers=${WORKERS}`, (ev) => {
      if (ev.event !== 'sample') return;
      if (!state.live) setLive(true);
      backoff = 1000;
      append(JSON.parse(ev.data));
    }, { signal: c.signal });
    throw new Error('the stats stream ended');
  } catch (e) {
    if (c.signal.aborted || ctrl !== c) return; // stopped, hidden, or replaced
    ctrl = null;
    if (e instanceof APIError && (e.status === 401 || e.status === 403)) {
      stopped = true;
      started = false;
      setLive(false); // the login form or the banner says why
      return;
    }
    setLive(false, e.message || String(e));
    if (stopped) return;
    retryTimer = setTimeout(run, backoff);
    backoff = Math.min(backoff * 2, 30000);
  }
}

document.addEventListener('visibilitychange', () => {
  if (!started) return;
  if (document.hidden) {
    clearTimeout(retryTimer);
    if (ctrl) { const c = ctrl; ctrl = null; c.abort(); }
    setLive(false);
  } else if (!ctrl) {
    backoff = 1000;
    run();
  }
});
