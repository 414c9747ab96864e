// The overview's four charts (uPlot, from embed/ui/vendor/, built by
// `make ui`), drawn from the stats hub: tokens/s (fleet and the busiest
// workers), queue depth, TTFT p50/p95, requests by outcome. Each container
// carries data-points (samples drawn) and data-nonzero (samples where any
// series has a value other than 0), updated on every redraw.

import { h } from './dom.js';
import * as stats from './stats.js';

const HEIGHT = 190;
const TOP_WORKERS = 5;

const DEFS = [
  {
    id: 'chart-tokens', title: 'Tokens per second', unit: 'tok/s',
    series(d) {
      const top = [...d.workers.entries()]
        .map(([id, col]) => [id, col.reduce((a, v) => a + (v || 0), 0)])
        .filter(([, sum]) => sum > 0)
        .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
        .slice(0, TOP_WORKERS)
        .map(([id]) => id);
      return [['fleet', d.tps, 2], ...top.map((id) => [id, d.workers.get(id), 1])];
    },
  },
  {
    id: 'chart-queue', title: 'Queue depth and running tasks', unit: 'tasks',
    series: (d) => [['queued interactive', d.qi], ['queued batch', d.qb], ['running', d.running]],
  },
  {
    id: 'chart-ttft', title: 'Time to first token', unit: 'ms',
    series: (d) => [['p50', d.p50], ['p95', d.p95]],
    points: true, // a sample between two without a first token is a lone point
  },
  {
    id: 'chart-outcomes', title: 'Requests by outcome (per sample)', unit: 'requests',
    series: (d) => [['ok', d.ok], ['rejected', d.rejected], ['cancelled', d.cancelled], ['failed', d.failed]],
    stepped: true,
  },
];

function palette() {
  const cs = getComputedStyle(document.documentElement);
  const v = (name) => cs.getPropertyValue(name).trim();
  return {
    series: [1, 2, 3, 4, 5, 6].map((i) => v(`--chart-${i}`)),
    outcomes: [v('--ok'), v('--warn'), v('--muted'), v('--bad')],
    axis: v('--muted'),
    grid: v('--grid'),
  };
}

// mountCharts builds the chart panels in root and keeps them drawn until
// the returned function is called.
export function mountCharts(root) {
  const panels = DEFS.map((def) => {
    const box = h('div', { id: def.id, class: 'chart', role: 'figure', 'aria-label': `${def.title}, last 15 minutes` });
    root.appendChild(h('section', { class: 'panel chart-panel' },
      h('h3', null, def.title, h('span', { class: 'unit' }, ' (' + def.unit + ')')), box));
    return { def, box, plot: null, keys: '' };
  });

  if (typeof window.uPlot !== 'function') {
    for (const p of panels) {
      p.box.appendChild(h('p', { class: 'note' }, 'Charts need `make ui`: this binary was built without the chart library (embed/ui/vendor/).'));
      p.box.dataset.points = '0';
      p.box.dataset.nonzero = '0';
    }
    return () => {};
  }

  let colors = palette();

  const draw = (rebuild) => {
    const d = stats.data;
    const xs = d.t.map((t) => t / 1000);
    for (const p of panels) {
      const series = p.def.series(d);
      const keys = series.map((s) => s[0]).join('\u0000');
      const cols = [xs, ...series.map((s) => s[1])];
      if (rebuild || !p.plot || keys !== p.keys) {
        if (p.plot) p.plot.destroy();
        p.box.replaceChildren();
        p.plot = create(p, series, cols, colors);
        p.keys = keys;
      } else {
        p.plot.setData(cols);
      }
      showLast(p.plot, xs.length);
      mark(p.box, cols);
    }
  };

  const resize = () => {
    for (const p of panels) {
      if (p.plot) p.plot.setSize({ width: width(p.box), height: HEIGHT });
    }
  };
  let raf = 0;
  const onResize = () => {
    cancelAnimationFrame(raf);
    raf = requestAnimationFrame(resize);
  };
  const dark = window.matchMedia('(prefers-color-scheme: dark)');
  const onScheme = () => { colors = palette(); draw(true); };

  draw(true);
  const unsub = stats.subscribe((kind) => { if (kind === 'load' || kind === 'sample') draw(false); });
  window.addEventListener('resize', onResize);
  dark.addEventListener('change', onScheme);
  return () => {
    unsub();
    window.removeEventListener('resize', onResize);
    dark.removeEventListener('change', onScheme);
    cancelAnimationFrame(raf);
    for (const p of panels) if (p.plot) p.plot.destroy();
  };
}

// showLast puts the newest sample's values in the legend while the pointer
// is not over the chart (uPlot shows the values under the pointer).
function showLast(u, n) {
  if (n && u.cursor && !(u.cursor.left >= 0) && typeof u.setLegend === 'function') u.setLegend({ idx: n - 1 });
}

function width(box) {
  return Math.max(200, Math.floor(box.clientWidth || box.parentElement.clientWidth - 24));
}

function create(p, series, cols, colors) {
  const U = window.uPlot;
  const stepped = p.def.stepped && U.paths && U.paths.stepped ? U.paths.stepped({ align: 1 }) : undefined;
  const axis = {
    stroke: colors.axis,
    grid: { stroke: colors.grid, width: 1 },
    ticks: { stroke: colors.grid, width: 1 },
  };
  const opts = {
    width: width(p.box),
    height: HEIGHT,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, p.def.id === 'chart-ttft' ? 10 : 1) * 1.1] } },
    axes: [axis, { ...axis, size: 56 }],
    legend: { live: true },
    hooks: { ready: [(u) => showLast(u, u.data[0].length)] },
    cursor: { drag: { x: false, y: false } },
    series: [
      { label: 'time' },
      ...series.map(([label, , w], i) => ({
        label,
        stroke: p.def.id === 'chart-outcomes' ? colors.outcomes[i] : colors.series[i % colors.series.length],
        width: w || 1.5,
        spanGaps: false,
        points: p.def.points ? { show: true, size: 4 } : { show: false },
        ...(stepped ? { paths: stepped } : {}),
      })),
    ],
  };
  return new U(opts, cols, p.box);
}

// mark sets the contract's attributes: samples drawn, and samples where any
// series is non-null and non-zero.
function mark(box, cols) {
  const n = cols[0].length;
  let nonzero = 0;
  for (let i = 0; i < n; i++) {
    for (let s = 1; s < cols.length; s++) {
      const v = cols[s][i];
      if (v !== null && v !== undefined && v !== 0 && !Number.isNaN(v)) { nonzero++; break; }
    }
  }
  box.dataset.points = String(n);
  box.dataset.nonzero = String(nonzero);
}
