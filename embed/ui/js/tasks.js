// #/tasks (the task list, with filters) and #/tasks/<id> (one task: status,
// timing, the scheduler's explanation, its event timeline, its text).

import { get, send, sse, enc, APIError } from './api.js';
import { h, setText, syncRows, table, relTime, setRelTime, fmtNum, fmtMs, toast, failed, setError, confirmDialog, refresher, textSink } from './dom.js';
import * as stats from './stats.js';
import { stateClass } from './overview.js';

const LIMIT = 200;
const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const filters = { status: '', model: '', worker: '' }; // kept while the page lives

const ttftOf = (t) => t.end?.timing?.ttft_ms ?? t.error?.timing?.ttft_ms ?? (t.end?.ttft_ms || null);
const active = (status) => status === 'queued' || status === 'running';

export function mountList(view) {
  const status = h('select', { id: 'filter-status' },
    h('option', { value: '' }, 'all'), STATUSES.map((s) => h('option', { value: s }, s)));
  status.value = filters.status;
  const model = h('input', { id: 'filter-model', type: 'search', placeholder: 'any', autocomplete: 'off', spellcheck: 'false', value: filters.model });
  const worker = h('input', { id: 'filter-worker', type: 'search', placeholder: 'any', autocomplete: 'off', spellcheck: 'false', value: filters.worker });
  const count = h('p', { class: 'muted', id: 'tasks-count', 'aria-live': 'polite' });
  const tasks = table('tasks', 'Tasks, newest first', [['Task'], ['Status'], ['Model'], ['Worker'], ['Priority'], ['Tokens', 'num'], ['TTFT', 'num'], ['Created']], 'No tasks match.');

  view.append(
    h('h1', null, 'Tasks'),
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter tasks', onsubmit: (e) => e.preventDefault() },
      h('div', { class: 'field' }, h('label', { for: 'filter-status' }, 'Status'), status),
      h('div', { class: 'field' }, h('label', { for: 'filter-model' }, 'Model'), model),
      h('div', { class: 'field' }, h('label', { for: 'filter-worker' }, 'Worker'), worker)),
    count,
    h('section', { class: 'panel' }, tasks.wrap));

  const build = (t) => h('tr', { dataset: { taskId: t.task_id } },
    h('th', { scope: 'row', class: 'id' }, h('a', { href: `#/tasks/${t.task_id}` }, t.task_id)),
    h('td', { class: 'status' }, h('span', { class: 'pill' })), h('td', { class: 'model' }), h('td', { class: 'worker' }),
    h('td', { class: 'priority' }), h('td', { class: 'tokens num' }), h('td', { class: 'ttft num' }), h('td', { class: 'created' }, relTime('')));
  const update = (tr, t) => {
    const c = tr.cells;
    const pill = c[1].firstChild;
    setText(pill, t.status);
    pill.className = 'pill ' + stateClass(t.status);
    c[1].title = t.error ? `${t.error.code}: ${t.error.message}` : '';
    setText(c[2], t.model);
    setText(c[3], t.worker_id || '—');
    setText(c[4], t.priority);
    setText(c[5], t.tokens_out ?? 0);
    setText(c[6], fmtMs(ttftOf(t)));
    setRelTime(c[7].firstChild, t.created_at);
  };

  let lastLoad = 0;
  // seen is the tasks_seq of the newest sample when the list was last
  // fetched: a sample with another one means the list changed since.
  let seen;
  const load = refresher(async () => {
    lastLoad = Date.now();
    seen = stats.data.last?.tasks_seq;
    const q = new URLSearchParams({ limit: String(LIMIT) });
    if (filters.status) q.set('status', filters.status);
    if (filters.model) q.set('model', filters.model);
    if (filters.worker) q.set('worker', filters.worker);
    try {
      const r = await get('/v2/tasks?' + q);
      // Filtered here too (exact, as the server does), newest first.
      const list = (r.tasks || []).filter((t) => (!filters.status || t.status === filters.status)
        && (!filters.model || t.model === filters.model) && (!filters.worker || t.worker_id === filters.worker)).reverse();
      syncRows(tasks.tbody, list, (t) => t.task_id, build, update);
      tasks.setEmpty(list.length === 0);
      setText(count, list.length >= LIMIT ? `The newest ${LIMIT} tasks.` : `${list.length} task${list.length === 1 ? '' : 's'}.`);
      setError('tasks', '');
    } catch (e) { failed('tasks', 'Cannot list the tasks', e); }
  }, 300);

  let typing = 0;
  const onFilter = () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      filters.status = status.value;
      filters.model = model.value.trim();
      filters.worker = worker.value.trim();
      load();
    }, 250);
  };
  status.addEventListener('change', onFilter);
  model.addEventListener('input', onFilter);
  worker.addEventListener('input', onFilter);

  const unsub = stats.subscribe((kind) => {
    const s = stats.data.last;
    if ((kind === 'sample' || kind === 'load') && s && s.tasks_seq !== seen) load();
  });
  stats.start();
  load();
  // Fallback: every 30 s, or every 5 s while no live stream tells when
  // tasks change (a user key may not read the stats).
  const timer = setInterval(() => {
    if (Date.now() - lastLoad >= (stats.status().live ? 30000 : 5000)) load();
  }, 5000);

  return () => { unsub(); clearInterval(timer); clearTimeout(typing); load.stop(); setError('tasks', ''); };
}

export function mountTask(view, id) {
  const status = h('span', { id: 'task-status', class: 'pill' }, '…');
  const meta = h('dl', { class: 'meta' });
  const cancel = h('button', { type: 'button', id: 'task-cancel', hidden: true }, 'Cancel task');
  const timing = h('div', { id: 'task-timing' });
  const explanation = h('div', { id: 'task-explanation' });
  const timeline = h('ol', { id: 'task-timeline', class: 'timeline' });
  const text = h('pre', { id: 'task-text', class: 'text', tabindex: '0', 'aria-label': 'Generated text' });
  const errorBox = h('p', { class: 'bad', hidden: true });

  view.append(h('div', { id: 'task' },
    h('p', null, h('a', { href: '#/tasks' }, '← Tasks')),
    h('h1', null, 'Task ', h('code', null, id)),
    h('div', { class: 'row' }, h('span', null, 'Status: '), status, cancel),
    errorBox,
    meta,
    h('section', { class: 'panel', 'aria-labelledby': 'h-timing' }, h('h2', { id: 'h-timing' }, 'Timing'), timing),
    h('section', { class: 'panel', 'aria-labelledby': 'h-expl' }, h('h2', { id: 'h-expl' }, 'Why this worker'), explanation),
    h('div', { class: 'cols' },
      h('section', { class: 'panel', 'aria-labelledby': 'h-events' }, h('h2', { id: 'h-events' }, 'Events'), timeline),
      h('section', { class: 'panel', 'aria-labelledby': 'h-text' }, h('h2', { id: 'h-text' }, 'Text'), text))));

  let task = null;
  let streamed = ''; // text from the token events, until the task has its own
  let live = null; // the sink of streamed into #task-text
  let dead = false;
  const ctrl = new AbortController();

  cancel.addEventListener('click', async () => {
    if (!(await confirmDialog(`Cancel task ${id}? Its stream ends with a CANCELLED error.`, 'Cancel task'))) return;
    try {
      await send('DELETE', `/v2/tasks/${enc(id)}`);
      toast(`Task ${id}: cancel requested.`);
    } catch (e) { toast(`Cancel failed: ${e.message}`, true); }
    load();
  });

  const load = refresher(async () => {
    try {
      task = await get(`/v2/tasks/${enc(id)}`, { signal: ctrl.signal });
      setError('task', '');
      render();
    } catch (e) {
      if (e instanceof APIError && e.status === 404) {
        setText(status, 'not found');
        status.className = 'pill bad';
        errorBox.hidden = false;
        setText(errorBox, `No task ${id} here (tasks are kept for a while after they end).`);
        return;
      }
      failed('task', 'Cannot read the task', e);
    }
  }, 250);

  function render() {
    const t = task;
    setText(status, t.status);
    status.className = 'pill ' + stateClass(t.status);
    cancel.hidden = !active(t.status);
    errorBox.hidden = !t.error;
    if (t.error) setText(errorBox, `${t.error.code}: ${t.error.message}${t.error.retriable ? ' (retriable)' : ''}`);
    meta.replaceChildren(...[
      ['Model', t.model], ['Priority', t.priority], ['Worker', t.worker_id || '—'], ['Attempts', t.attempts],
      ['Tokens out', t.tokens_out ?? 0], ['Created', relTime(t.created_at)],
      ['Started', t.started_at ? relTime(t.started_at) : '—'], ['Finished', t.finished_at ? relTime(t.finished_at) : '—'],
      t.end ? ['Stop reason', t.end.stop_reason + (t.end.stop_sequence_matched ? ` (${t.end.stop_sequence_matched})` : '')] : null,
      t.end ? ['Prompt tokens', `${t.end.prompt_tokens} (${t.end.cached_tokens} cached)`] : null,
    ].filter(Boolean).map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v))));
    for (const li of timeline.children) fillTime(li.querySelector('.ev-time'), li.dataset.event);
    renderTiming(timing, t.end?.timing || t.error?.timing, t);
    renderExplanation(explanation, t.explanation);
    if (live && !t.text) return; // the token events write the text
    if (live) { live.flush(); live = null; }
    setText(text, t.text || streamed || (active(t.status) ? '…' : '(no text)'));
  }

  // The event timeline: one li per event, token events folded into one
  // "N tokens" li per run (a run ends at a non-token event).
  let run = null;
  let lastID = '';
  const onEvent = (ev) => {
    if (ev.comment !== undefined) return;
    if (ev.id) lastID = ev.id;
    let d = {};
    try { d = JSON.parse(ev.data); } catch { /* shown raw below */ }
    if (ev.event === 'token') {
      streamed += d.t || '';
      if (!run) {
        run = { n: 0, first: d.i ?? 0, li: h('li', { dataset: { event: 'token' }, class: 'ev-token' }, h('span', { class: 'ev-name' }, 'token'), h('span', { class: 'ev-time' }), h('span', { class: 'ev-sum' })) };
        timeline.appendChild(run.li);
      }
      run.n++;
      setText(run.li.lastChild, `${run.n} token${run.n === 1 ? '' : 's'} (#${run.first}–#${run.first + run.n - 1})`);
      if (!task || !task.text) {
        if (!live) { text.replaceChildren(); live = textSink(text); }
        live.add(d.t || '');
      }
      return;
    }
    run = null;
    timeline.appendChild(h('li', { dataset: { event: ev.event } },
      h('span', { class: 'ev-name' }, ev.event), eventTime(ev.event), h('span', { class: 'ev-sum' }, summary(ev.event, d, ev.data))));
    const changes = ev.event === 'started' || ev.event === 'migrated' || ev.event === 'end' || ev.event === 'error';
    if (changes && (!task || active(task.status))) load();
  };
  // An event's time, where the task says it: queued at its creation,
  // started at its (last) start, end or error when it finished.
  const eventTime = (name) => {
    const slot = h('span', { class: 'ev-time' });
    fillTime(slot, name);
    return slot;
  };
  const fillTime = (slot, name) => {
    if (slot.firstChild) return;
    const at = name === 'queued' ? task?.created_at : name === 'started' ? task?.started_at : (name === 'end' || name === 'error') ? task?.finished_at : '';
    if (at) slot.appendChild(relTime(at));
  };

  (async () => {
    await load();
    let backoff = 1000;
    while (!dead) {
      try {
        await sse(`/v2/tasks/${enc(id)}/events`, onEvent, { signal: ctrl.signal, headers: lastID ? { 'Last-Event-ID': lastID } : {} });
        break; // the stream ends at the terminal event
      } catch (e) {
        if (dead || e.name === 'AbortError') return;
        if (e instanceof APIError) { if (e.status !== 404) failed('task', 'Cannot follow the task\'s events', e); return; }
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 15000);
      }
    }
    if (!dead) load();
  })();

  return () => { dead = true; ctrl.abort(); load.stop(); setError('task', ''); };
}

function summary(name, d, raw) {
  switch (name) {
    case 'queued':
      if (d.reason === 'starting') return `waiting for a worker to start on pool ${d.pool || '?'}: ${d.step || 'starting'}${d.progress ? ` ${Math.round(d.progress * 100)}%` : ''}`;
      return `queued at position ${d.position ?? '?'}${d.predicted_start_ms > 0 ? `, predicted start in ${fmtMs(d.predicted_start_ms)}` : ''}`;
    case 'started':
      return `on worker ${d.worker_id} (slot ${d.slot}, seed ${d.seed}), prompt ${d.prompt_tokens} tokens, ${d.cached_tokens} cached${d.resumed_tokens ? `, resumed after ${d.resumed_tokens}` : ''}`;
    case 'migrated':
      return `moved from ${d.from} to ${d.to} after ${d.at_token} tokens (${d.reason})`;
    case 'end':
      return `${d.tokens_out} tokens, ${d.stop_reason}${d.decode_time_ms ? `, decode ${fmtMs(d.decode_time_ms)}` : ''}`;
    case 'error':
      return `${d.code}: ${d.message}${d.retriable ? ' (retriable)' : ''}`;
    default:
      return raw.length > 200 ? raw.slice(0, 200) + '…' : raw;
  }
}

function renderTiming(el, tm, t) {
  if (!tm) {
    el.replaceChildren(h('p', { class: 'muted' }, active(t.status) ? 'The timing comes with the task\'s end.' : 'No timing recorded.'));
    return;
  }
  const total = tm.total_ms || 0;
  const ttft = tm.ttft_ms || 0;
  const decode = ttft > 0 ? Math.max(0, total - ttft) : 0;
  const before = (tm.queue_ms || 0) + (tm.schedule_ms || 0) + (tm.routing_ms || 0) + (tm.worker_ttft_ms || 0);
  const other = Math.max(0, (ttft > 0 ? ttft : total) - before);
  const parts = [
    ['queue', 'Queue wait', tm.queue_ms], ['schedule', 'Schedule', tm.schedule_ms], ['routing', 'Routing script', tm.routing_ms],
    ['worker', 'Worker first token', tm.worker_ttft_ms], ['other', 'Relay and other', other], ['decode', 'Decode', decode],
  ];
  const bar = h('div', { class: 'timing-bar', role: 'presentation' });
  for (const [cls, label, ms] of parts) {
    if (!ms || !total) continue;
    const seg = h('span', { class: 'seg seg-' + cls, title: `${label}: ${fmtMs(ms)}` });
    seg.style.width = Math.max(0.5, (ms / total) * 100).toFixed(2) + '%';
    bar.appendChild(seg);
  }
  const rows = [
    ['queue', 'Queue wait', tm.queue_ms], ['schedule', 'Schedule', tm.schedule_ms], ['routing', 'Routing script', tm.routing_ms],
    ['worker', 'Worker first token', tm.worker_ttft_ms], ['ttft', 'First token (TTFT)', ttft || null],
    ['decode', 'Decode (total − TTFT)', ttft > 0 ? decode : null], ['total', 'Total', total],
  ];
  el.replaceChildren(bar, h('dl', { class: 'timing' }, rows.map(([cls, label, ms]) =>
    h('div', { dataset: { part: cls } }, h('dt', null, h('span', { class: 'key seg-' + cls }), label), h('dd', { class: 'num' }, fmtMs(ms))))),
  h('p', { class: 'muted', hidden: !(tm.attempts > 1) }, `${tm.attempts} attempts (the task moved between workers).`));
}

function renderExplanation(el, ex) {
  if (!ex) {
    el.replaceChildren(h('p', { class: 'muted' }, 'No placement yet: the scheduler explains its choice when it places the task.'));
    return;
  }
  const out = [h('p', { class: 'summary' }, ex.summary || '')];
  if (ex.chosen) out.push(h('p', null, 'Chosen: ', h('strong', { class: 'chosen' }, ex.chosen), ex.score ? ` (score ${fmtNum(ex.score, 3)})` : ''));
  if (ex.routing) out.push(h('p', { class: 'routing' }, 'Routing: ', ex.routing));
  if (ex.candidates?.length) {
    const t = table('', 'Candidates, best first', [['Worker'], ['Score', 'num'], ['Free slots', 'num'], ['Load', 'num'], ['Expected cached tokens', 'num']], '');
    t.table.removeAttribute('id');
    t.table.classList.add('candidates');
    for (const c of ex.candidates) {
      t.tbody.appendChild(h('tr', { class: c.worker_id === ex.chosen ? 'chosen' : '', dataset: { workerId: c.worker_id } },
        h('th', { scope: 'row' }, c.worker_id), h('td', { class: 'num' }, fmtNum(c.score, 3)), h('td', { class: 'num' }, c.slots_free),
        h('td', { class: 'num' }, fmtNum(c.load, 2)), h('td', { class: 'num' }, c.expected_cached_tokens)));
    }
    out.push(h('h3', null, 'Candidates'), t.wrap);
  }
  if (ex.rejected?.length) {
    out.push(h('h3', null, 'Rejected'), h('ul', { class: 'rejected' }, ex.rejected.map((r) =>
      h('li', { dataset: { workerId: r.worker_id } }, h('strong', null, r.worker_id), ': ', r.reason))));
  }
  if (ex.at) out.push(h('p', { class: 'muted' }, 'Decided ', relTime(ex.at), '.'));
  el.replaceChildren(...out);
}
