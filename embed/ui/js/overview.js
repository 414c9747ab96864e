// #/overview: totals, the four charts, workers (drain), models (scale),
// pools. Lists are fetched when the stats stream says they moved
// (workers_seq; tasks_seq for slots), with a slow fallback refresh.

import { get, send, enc } from './api.js';
import { h, setText, syncRows, table, relTime, setRelTime, fmtNum, fmtBytes, toast, failed, setError, confirmDialog, refresher } from './dom.js';
import * as stats from './stats.js';
import { mountCharts } from './charts.js';

const STATS_WORKERS = 10; // the stats hub's per-worker limit

export function mount(view) {
  const totals = h('div', { id: 'totals', class: 'totals' });
  const cards = {};
  for (const [key, label] of [['workers', 'Workers'], ['slots', 'Slots busy/total'], ['tps', 'Tokens/s'], ['queued', 'Queued'], ['running', 'Running']]) {
    cards[key] = h('span', { class: 'value' }, '—');
    totals.appendChild(h('div', { class: 'total', dataset: { total: key } }, h('span', { class: 'label' }, label), cards[key]));
  }
  const charts = h('div', { class: 'charts' });

  const workers = table('workers', 'Workers', [['Worker'], ['State'], ['Model'], ['Backend'], ['Slots', 'num'], ['Tokens/s', 'num'], ['Last seen'], ['Pool'], ['Action']], 'No workers registered.');
  const models = table('models', 'Models', [['Model'], ['State'], ['Replicas', 'num'], ['Queued interactive', 'num'], ['Queued batch', 'num'], ['Running', 'num'], ['Action']], 'No models: declare one (PUT /v2/models/{id}) or start a worker.');
  const pools = table('pools', 'Pools', [['Pool'], ['Host'], ['State'], ['Memory free', 'num'], ['GPU memory free', 'num'], ['Workers', 'num'], ['Refreshed'], ['Last error']], 'No pools.');

  view.append(
    h('h1', { class: 'sr' }, 'Overview'),
    h('section', { class: 'panel', 'aria-labelledby': 'h-totals' }, h('h2', { id: 'h-totals', class: 'sr' }, 'Totals'), totals),
    h('section', { 'aria-labelledby': 'h-charts' }, h('h2', { id: 'h-charts' }, 'Last 15 minutes'), charts),
    h('section', { class: 'panel', 'aria-labelledby': 'h-workers' }, h('h2', { id: 'h-workers' }, 'Workers'), workers.wrap),
    h('section', { class: 'panel', 'aria-labelledby': 'h-models' }, h('h2', { id: 'h-models' }, 'Models'), models.wrap),
    h('section', { class: 'panel', 'aria-labelledby': 'h-pools' }, h('h2', { id: 'h-pools' }, 'Pools'), pools.wrap),
  );

  let workerList = null; // last GET /v2/workers
  let declared = new Map(); // id -> ModelView
  // The sequence numbers of the newest sample when the workers were last
  // fetched: a sample with others means the list (or its slots) changed.
  let seen = { tasks: undefined, workers: undefined };

  // --- workers
  const buildWorker = (w) => {
    const btn = h('button', { type: 'button', class: 'drain small', dataset: { workerId: w.worker_id }, 'aria-label': `Drain worker ${w.worker_id}` }, 'Drain');
    btn.addEventListener('click', () => drain(btn.dataset.workerId));
    return h('tr', { dataset: { workerId: w.worker_id } },
      h('th', { scope: 'row', class: 'id' }, w.worker_id),
      h('td', { class: 'state' }, h('span', { class: 'pill' })),
      h('td', { class: 'model' }), h('td', { class: 'backend' }), h('td', { class: 'slots num' }),
      h('td', { class: 'tps num' }), h('td', { class: 'last-seen' }, relTime('')), h('td', { class: 'pool' }),
      h('td', { class: 'action' }, btn));
  };
  const updateWorker = (tr, w) => {
    const c = tr.cells;
    const pill = c[1].firstChild;
    setText(pill, w.state);
    pill.className = 'pill ' + stateClass(w.state);
    setText(c[2], w.model?.id || '');
    setText(c[3], w.backend || '');
    const busy = w.assigned || 0; // the orchestrator's count: the heartbeat's lags
    setText(c[4], `${busy}/${w.slots || 0}`);
    c[4].title = `the orchestrator assigned ${w.assigned || 0}; the worker reported ${w.slots_busy || 0} busy`;
    setText(c[5], fmtNum(workerTPS(w)));
    setRelTime(c[6].firstChild, w.last_seen);
    setText(c[7], w.pool || '—');
    const btn = c[8].firstChild;
    const canDrain = w.state === 'healthy' || w.state === 'unhealthy';
    btn.hidden = !canDrain;
    btn.disabled = !canDrain;
  };
  const workerTPS = (w) => {
    const s = stats.data.last;
    if (!s) return w.tokens_per_second;
    const ws = s.workers || {};
    if (w.worker_id in ws) return ws[w.worker_id];
    return Object.keys(ws).length < STATS_WORKERS ? 0 : w.tokens_per_second;
  };
  const renderWorkers = () => {
    if (!workerList) return;
    syncRows(workers.tbody, workerList, (w) => w.worker_id, buildWorker, updateWorker);
    workers.setEmpty(workerList.length === 0);
    renderTotals();
    renderModels();
  };
  const loadWorkers = refresher(async () => {
    const l = stats.data.last;
    if (l) seen = { tasks: l.tasks_seq, workers: l.workers_seq };
    try {
      const r = await get('/v2/workers');
      workerList = (r.workers || []).slice().sort((a, b) => (a.worker_id < b.worker_id ? -1 : 1));
      setError('workers', '');
      renderWorkers();
    } catch (e) { failed('workers', 'Cannot list the workers', e); }
  }, 1000);

  async function drain(id) {
    const ok = await confirmDialog(`Drain worker ${id}? It takes no new tasks; the tasks running on it finish there.`, 'Drain');
    if (!ok) return;
    try {
      const v = await send('POST', `/v2/workers/${enc(id)}/drain`);
      toast(`Worker ${id} is ${v?.state || 'draining'}.`);
    } catch (e) {
      toast(`Drain ${id} failed: ${e.message}`, true);
    }
    loadWorkers();
  }

  // --- models
  const buildModel = (m) => {
    const btn = h('button', { type: 'button', class: 'scale small', dataset: { model: m.id }, 'aria-label': `Scale model ${m.id}` }, 'Scale');
    btn.addEventListener('click', () => scale(btn.dataset.model));
    return h('tr', { dataset: { model: m.id } },
      h('th', { scope: 'row', class: 'model' }, m.id),
      h('td', { class: 'state' }, h('span', { class: 'pill' })),
      h('td', { class: 'replicas num' }), h('td', { class: 'queued-interactive num' }), h('td', { class: 'queued-batch num' }),
      h('td', { class: 'running num' }), h('td', { class: 'action' }, btn));
  };
  const updateModel = (tr, m) => {
    const c = tr.cells;
    const pill = c[1].firstChild;
    setText(pill, m.state);
    pill.className = 'pill ' + stateClass(m.state);
    c[1].title = m.lastError || '';
    setText(c[2], m.replicas);
    c[2].title = m.replicasTitle;
    setText(c[3], m.qi);
    setText(c[4], m.qb);
    setText(c[5], m.running);
    const btn = c[6].firstChild;
    btn.hidden = !m.declared;
    btn.disabled = !m.declared;
  };
  function renderModels() {
    const rows = new Map();
    const row = (id) => {
      if (!rows.has(id)) rows.set(id, { id, state: '', replicas: 0, replicasTitle: '', qi: 0, qb: 0, running: 0, workers: 0, declared: false, lastError: '' });
      return rows.get(id);
    };
    for (const w of workerList || []) {
      if (w.state === 'healthy' || w.state === 'draining') row(w.model?.id || '?').workers++;
    }
    for (const l of stats.data.last?.models || []) {
      const r = row(l.model);
      r.qi = l.queued_interactive || 0;
      r.qb = l.queued_batch || 0;
      r.running = l.running || 0;
      r.workers = Math.max(r.workers, l.workers || 0);
    }
    for (const [id, m] of declared) {
      const r = row(id);
      r.declared = true;
      r.state = m.state;
      r.lastError = m.last_error || '';
      r.replicas = `${m.replicas?.ready ?? 0}/${m.replicas?.desired ?? 0}`;
      r.replicasTitle = `ready/desired; min ${m.min_replicas}, max ${m.max_replicas}, starting ${m.replicas?.starting ?? 0}`;
    }
    for (const r of rows.values()) {
      if (!r.declared) {
        r.state = r.workers ? 'served' : 'no worker';
        r.replicas = String(r.workers);
        r.replicasTitle = 'workers serving it (not declared: started by hand)';
      }
    }
    const list = [...rows.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    syncRows(models.tbody, list, (m) => m.id, buildModel, updateModel);
    models.setEmpty(list.length === 0);
  }
  const loadModels = refresher(async () => {
    try {
      const r = await get('/v2/models');
      declared = new Map((r.models || []).map((m) => [m.id, m]));
      setError('models', '');
      renderModels();
    } catch (e) { failed('models', 'Cannot list the models', e); }
  }, 1000);

  async function scale(id) {
    let spec;
    try {
      spec = await get(`/v2/models/${enc(id)}`);
    } catch (e) {
      toast(`Cannot read model ${id}: ${e.message}`, true);
      return;
    }
    const n = await confirmDialog(
      `Scale model ${id}: how many replicas should the fleet keep running at least? (now ${spec.min_replicas}, at most ${spec.max_replicas})`,
      'Scale', { label: 'Minimum replicas', value: spec.min_replicas, min: 0, max: 64 });
    if (n === null || Number.isNaN(n)) return;
    const body = {
      id: spec.id, source: spec.source, sha256: spec.sha256, min_replicas: n,
      max_replicas: Math.max(spec.max_replicas || 0, n), idle_ttl: spec.idle_ttl, ctx: spec.ctx, slots: spec.slots,
      backend: spec.backend, embedding: spec.embedding, pools: spec.pools, labels: spec.labels,
    };
    try {
      const v = await send('PUT', `/v2/models/${enc(id)}`, body);
      toast(`Model ${id}: min_replicas ${v.min_replicas}, max ${v.max_replicas} (${v.state}).`);
    } catch (e) {
      toast(`Scaling ${id} failed: ${e.message}`, true);
    }
    loadModels();
  }

  // --- pools
  const buildPool = (p) => h('tr', { dataset: { pool: p.name } },
    h('th', { scope: 'row', class: 'pool' }, p.name),
    h('td', { class: 'host' }), h('td', { class: 'state' }, h('span', { class: 'pill' })), h('td', { class: 'mem num' }),
    h('td', { class: 'vram num' }), h('td', { class: 'workers num' }), h('td', { class: 'refreshed' }, relTime('')),
    h('td', { class: 'last-error' }));
  const updatePool = (tr, p) => {
    const c = tr.cells;
    const inv = p.inventory;
    setText(c[1], p.transport === 'ssh' ? p.host : 'local');
    const pill = c[2].firstChild;
    setText(pill, p.state === 'ok' ? 'reachable' : p.state);
    pill.className = 'pill ' + stateClass(p.state);
    setText(c[3], inv ? `${fmtBytes(inv.ram_free_bytes)} of ${fmtBytes(inv.ram_total_bytes)}` : '—');
    const devs = (inv?.backends || []).flatMap((b) => b.devices || []);
    setText(c[4], devs.length ? devs.map((d) => `${fmtBytes(d.vram_free_bytes)} of ${fmtBytes(d.vram_total_bytes)}`).join(', ') : '—');
    setText(c[5], inv ? (inv.workers || []).length : '—');
    setRelTime(c[6].firstChild, p.refreshed_at || '');
    setText(c[7], p.last_error || '');
  };
  const loadPools = refresher(async () => {
    try {
      const r = await get('/v2/pools');
      const list = (r.pools || []).slice().sort((a, b) => (a.name < b.name ? -1 : 1));
      syncRows(pools.tbody, list, (p) => p.name, buildPool, updatePool);
      pools.setEmpty(list.length === 0);
      setError('pools', '');
    } catch (e) { failed('pools', 'Cannot list the pools', e); }
  }, 1000);

  // --- totals and live updates
  function renderTotals() {
    const s = stats.data.last;
    if (workerList) {
      const up = workerList.filter((w) => w.state === 'healthy').length;
      setText(cards.workers, `${up} healthy of ${workerList.length}`);
      let busy = 0, total = 0;
      for (const w of workerList) {
        if (w.state === 'dead') continue;
        busy += w.assigned || 0;
        total += w.slots || 0;
      }
      setText(cards.slots, `${busy}/${total}`);
    }
    if (s) {
      setText(cards.tps, fmtNum(s.tokens_per_second));
      setText(cards.queued, `${(s.queued_interactive || 0) + (s.queued_batch || 0)}`);
      cards.queued.title = `${s.queued_interactive || 0} interactive, ${s.queued_batch || 0} batch`;
      setText(cards.running, s.running || 0);
    }
  }

  const onStats = (kind) => {
    if (kind === 'status') {
      const st = stats.status();
      if (st.error && !st.live) setError('stats', `Live updates stopped: ${st.error} (retrying)`);
      else setError('stats', '');
      return;
    }
    const s = stats.data.last;
    if (!s) return;
    if (s.workers_seq !== seen.workers) {
      if (seen.workers !== undefined) loadModels();
      loadWorkers();
    } else if (s.tasks_seq !== seen.tasks) loadWorkers();
    renderTotals();
    renderModels();
    if (workerList) for (const tr of workers.tbody.rows) {
      const w = workerList.find((x) => x.worker_id === tr.dataset.workerId);
      if (w) setText(tr.cells[5], fmtNum(workerTPS(w)));
    }
  };

  const unsub = stats.subscribe(onStats);
  stats.start();
  const unCharts = mountCharts(charts);
  loadWorkers();
  loadModels();
  loadPools();
  const fallback = [setInterval(loadWorkers, 10000), setInterval(() => { loadModels(); loadPools(); }, 30000)];
  if (stats.data.last) onStats('sample');

  return () => {
    unsub();
    unCharts();
    fallback.forEach(clearInterval);
    for (const r of [loadWorkers, loadModels, loadPools]) r.stop();
    for (const k of ['workers', 'models', 'pools', 'stats']) setError(k, '');
  };
}

export function stateClass(state) {
  switch (state) {
    case 'healthy': case 'ready': case 'ok': case 'succeeded': case 'served': return 'good';
    case 'draining': case 'starting': case 'queued': case 'running': case 'unknown': case 'idle': return 'warn';
    case 'cancelled': case 'no worker': return 'muted';
    default: return 'bad';
  }
}
