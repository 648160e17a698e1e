// Overview: every queue with its counts, rates and a one-minute trend of its depth.

import { api } from './api.js';
import { h, fill, fmtInt, fmtRate, queueHref } from './dom.js';
import { sparkline } from './chart.js';

const COLUMNS = [
  { key: 'available', label: 'Available', fmt: fmtInt },
  { key: 'locked', label: 'Locked', fmt: fmtInt },
  { key: 'dead_lettered', label: 'Dead-lettered', fmt: fmtInt },
  { key: 'total', label: 'Total', fmt: fmtInt },
  { key: 'publish_rate_per_sec', label: 'Publish/s', fmt: fmtRate },
  { key: 'ack_rate_per_sec', label: 'Ack/s', fmt: fmtRate },
  { key: 'nack_rate_per_sec', label: 'Nack/s', fmt: fmtRate },
];

// Limitation: one metrics request per queue per refresh; past this many queues the
// sparklines of the rest are left out rather than flooding the server.
const MAX_SPARKLINES = 50;

export function overviewPage() {
  const rows = new Map();
  let tbody;
  let summary;
  let empty;

  function row(name) {
    const cells = {};
    const link = h('a', { href: queueHref(name) }, name);
    const tr = h('tr', { 'data-queue': name },
      h('th', { scope: 'row', 'data-label': 'Queue' }, link),
      COLUMNS.map((c) => (cells[c.key] =
        h('td', { class: 'num', 'data-col': c.key, 'data-label': c.label }))),
      (cells.trend =
        h('td', { class: 'trend', 'data-col': 'trend', 'data-label': 'Last minute' })));
    return { tr, cells };
  }

  function update(queues) {
    const names = new Set(queues.map((q) => q.name));
    for (const [name, r] of rows) {
      if (!names.has(name)) {
        r.tr.remove();
        rows.delete(name);
      }
    }
    // Rows are updated in place, so keyboard focus on a queue link survives a refresh.
    let previous = null;
    for (const q of queues) {
      let r = rows.get(q.name);
      if (!r) {
        r = row(q.name);
        rows.set(q.name, r);
      }
      const expected = previous ? previous.nextSibling : tbody.firstChild;
      if (expected !== r.tr) tbody.insertBefore(r.tr, expected);
      previous = r.tr;
      const total = q.total ?? (q.available + q.locked);
      for (const c of COLUMNS) {
        const value = c.key === 'total' ? total : q[c.key];
        r.cells[c.key].textContent = c.fmt(value);
      }
      r.cells.dead_lettered.classList.toggle('warn', (q.dead_lettered ?? 0) > 0);
    }
    empty.hidden = queues.length > 0;
  }

  async function refreshTrends(queues) {
    const shown = queues.slice(0, MAX_SPARKLINES);
    const series = await Promise.all(shown.map((q) => api.metrics(q.name).catch(() => null)));
    shown.forEach((q, i) => {
      const r = rows.get(q.name);
      if (!r || !series[i]) return;
      fill(r.cells.trend, sparkline(series[i].points, 'total', `${q.name} total`));
    });
  }

  return {
    title: 'Overview',
    mount(main) {
      summary = h('dl', { class: 'tiles', 'aria-label': 'Totals' });
      tbody = h('tbody');
      empty = h('p', { class: 'empty-state', hidden: true },
        'No queues yet. ', h('a', { href: '/ui/admin' }, 'Create one in Administration'),
        ', or publish to a new queue name.');
      fill(main,
        h('h1', {}, 'Queues'),
        summary,
        h('div', { class: 'table-wrap' },
          h('table', { class: 'queues cards' },
            h('caption', { class: 'sr-only' }, 'Queues, refreshed every 2 seconds'),
            h('thead', {}, h('tr', {},
              h('th', { scope: 'col' }, 'Queue'),
              COLUMNS.map((c) => h('th', { scope: 'col', class: 'num' }, c.label)),
              h('th', { scope: 'col' }, 'Last minute'))),
            tbody)),
        empty);
    },
    async refresh() {
      const stats = await api.stats();
      const queues = stats.queues || [];
      const s = stats.summary || {};
      const dead = queues.reduce((sum, q) => sum + (q.dead_lettered ?? 0), 0);
      fill(summary,
        tile('Queues', fmtInt(s.total_queues ?? queues.length)),
        tile('Messages', fmtInt(s.total_messages)),
        tile('Available', fmtInt(s.total_available)),
        tile('Locked', fmtInt(s.total_locked)),
        tile('Dead letters', fmtInt(dead)));
      update(queues);
      await refreshTrends(queues);
    },
  };
}

function tile(label, value) {
  return h('div', { class: 'tile' }, h('dt', {}, label), h('dd', {}, value));
}
