// One queue: live counts and charts, its settings, purge and delete, and its dead letters.

import { api } from './api.js';
import {
  h, fill, fmtInt, fmtRate, fmtTime, queueHref, confirmAction, notify, notifyError, countOf,
} from './dom.js';
import { lineChart } from './chart.js';

const DEPTH_TRACES = [
  { key: 'total', label: 'Total' },
  { key: 'locked', label: 'Locked' },
];
const RATE_TRACES = [
  { key: 'publish_rate_per_sec', label: 'Publish/s' },
  { key: 'ack_rate_per_sec', label: 'Ack/s' },
  { key: 'nack_rate_per_sec', label: 'Nack/s' },
];

let formCount = 0;

/**
 * The edit form of one queue: name and allow_duplicates, with ordering and priority kind
 * shown read-only (both are fixed at creation). `onSaved(newName)` runs after a save.
 */
export function settingsForm(stats, onSaved) {
  const id = `settings-${++formCount}`;
  const name = h('input', {
    id: `${id}-name`, name: 'name', value: stats.name, required: true, maxlength: 255,
    autocomplete: 'off', spellcheck: 'false',
  });
  const dups = h('input', {
    id: `${id}-dups`, type: 'checkbox', name: 'allow_duplicates',
    checked: stats.config.allow_duplicates,
  });
  const save = h('button', { type: 'submit' }, 'Save');
  const form = h('form', { class: 'settings', 'data-queue': stats.name },
    h('div', { class: 'field' }, h('label', { for: `${id}-name` }, 'Name'), name),
    h('div', { class: 'field check' }, dups,
      h('label', { for: `${id}-dups` }, 'Allow duplicate payloads')),
    h('dl', { class: 'fixed' },
      h('div', {}, h('dt', {}, 'Ordering'), h('dd', { 'data-field': 'ordering' },
        stats.config.ordering)),
      h('div', {}, h('dt', {}, 'Priority kind'), h('dd', { 'data-field': 'priority_kind' },
        stats.config.priority_kind ?? 'Numeric'))),
    h('div', { class: 'actions' }, save));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const newName = name.value;
    const config = {};
    if (newName !== stats.name) config.name = newName;
    if (dups.checked !== stats.config.allow_duplicates) config.allow_duplicates = dups.checked;
    if (!Object.keys(config).length) {
      notify('Nothing to change.');
      return;
    }
    save.disabled = true;
    try {
      await api.updateQueue(stats.name, config);
      notify(`Queue ${newName} saved.`, 'success');
      const config2 = { ...stats.config, allow_duplicates: dups.checked };
      stats = { ...stats, name: newName, config: config2 };
      form.dataset.queue = newName;
      onSaved(newName);
    } catch (err) {
      notifyError(err);
    } finally {
      save.disabled = false;
    }
  });
  return form;
}

export function queuePage(name) {
  let tiles;
  let depthBox;
  let rateBox;
  let settingsBox;
  let dlq;
  let lastDead = null;

  function goTo(href) {
    window.dispatchEvent(new CustomEvent('qrusty:navigate', { detail: href }));
  }

  async function purge() {
    const question =
      `Remove every message of “${name}”, locked ones too? Its dead letters stay.`;
    if (!await confirmAction('Purge queue', question, 'Purge')) return;
    try {
      const reply = await api.purgeQueue(name);
      notify(`${countOf(reply && reply.purged_messages, 'message')} purged.`, 'success');
    } catch (err) {
      notifyError(err);
    }
  }

  async function remove() {
    if (!await confirmAction('Delete queue', `Delete “${name}” with all its messages and ` +
      'dead letters? This cannot be undone.', 'Delete')) return;
    try {
      const reply = await api.deleteQueue(name);
      notify(`Deleted ${name} with ${countOf(reply && reply.deleted_messages, 'message')}.`,
        'success');
      goTo('/ui/');
    } catch (err) {
      notifyError(err);
    }
  }

  return {
    title: name,
    mount(main) {
      tiles = h('dl', { class: 'tiles', 'aria-label': 'Current counts' });
      depthBox = h('div', { class: 'chart-box', id: 'chart-depth' });
      rateBox = h('div', { class: 'chart-box', id: 'chart-rates' });
      settingsBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
      dlq = deadLetters(name, () => { lastDead = null; });
      fill(main,
        h('p', { class: 'crumbs' }, h('a', { href: '/ui/' }, 'Overview'), ' / '),
        h('h1', { class: 'queue-name' }, name),
        tiles,
        h('section', { class: 'charts', 'aria-label': 'Charts' }, depthBox, rateBox),
        h('div', { class: 'columns' },
          h('section', { class: 'panel', 'aria-labelledby': 'settings-h' },
            h('h2', { id: 'settings-h' }, 'Settings'), settingsBox),
          h('section', { class: 'panel', 'aria-labelledby': 'danger-h' },
            h('h2', { id: 'danger-h' }, 'Messages'),
            h('p', { class: 'muted' }, 'Both ask for confirmation first.'),
            h('div', { class: 'actions' },
              h('button', { type: 'button', class: 'danger', onclick: purge }, 'Purge messages…'),
              h('button', { type: 'button', class: 'danger', onclick: remove },
                'Delete queue…')))),
        dlq.el);
    },
    async refresh() {
      const [stats, metrics] = await Promise.all([api.queueStats(name), api.metrics(name)]);
      const total = stats.total ?? stats.available + stats.locked;
      fill(tiles,
        tile('Available', fmtInt(stats.available), 'available'),
        tile('Locked', fmtInt(stats.locked), 'locked'),
        tile('Dead-lettered', fmtInt(stats.dead_lettered), 'dead_lettered'),
        tile('Total', fmtInt(total), 'total'),
        tile('Publish/s', fmtRate(stats.publish_rate_per_sec), 'publish'),
        tile('Ack/s', fmtRate(stats.ack_rate_per_sec), 'ack'),
        tile('Nack/s', fmtRate(stats.nack_rate_per_sec), 'nack'));

      const points = metrics.points || [];
      const width = (box) => box.clientWidth - 2;
      fill(depthBox, lineChart({ title: 'Messages', points, traces: DEPTH_TRACES,
        width: width(depthBox), integers: true }));
      fill(rateBox, lineChart({ title: 'Rates per second', points, traces: RATE_TRACES,
        width: width(rateBox) }));

      if (!settingsBox.querySelector('form')) {
        fill(settingsBox, settingsForm(stats, (newName) => {
          if (newName !== name) goTo(queueHref(newName));
        }));
      }
      // The dead-letter list is reloaded when its count moves, not on every tick, so a
      // selection being made is not swept away under the user's cursor.
      if (stats.dead_lettered !== lastDead) {
        lastDead = stats.dead_lettered;
        await dlq.load();
      }
    },
  };
}

function tile(label, value, key) {
  return h('div', { class: 'tile', 'data-tile': key }, h('dt', {}, label), h('dd', {}, value));
}

/** The dead-letter panel of queue `name`; `changed()` asks for a reload on the next tick. */
function deadLetters(name, changed) {
  const limit = h('input', {
    id: 'dlq-limit', type: 'number', min: 1, max: 10000, value: '100', inputmode: 'numeric',
  });
  const selectAll = h('input', { type: 'checkbox', 'aria-label': 'Select all dead letters' });
  const tbody = h('tbody');
  const status = h('p', { class: 'muted', 'aria-live': 'polite' });
  const redriveSelected = h('button', { type: 'button', disabled: true }, 'Redrive selected');
  const redriveAll = h('button', { type: 'button' }, 'Redrive all');
  const purgeAll = h('button', { type: 'button', class: 'danger' }, 'Purge dead letters…');
  const selected = new Set();

  function syncSelection() {
    redriveSelected.disabled = selected.size === 0;
    redriveSelected.textContent =
      selected.size ? `Redrive selected (${selected.size})` : 'Redrive selected';
    const boxes = tbody.querySelectorAll('input[type=checkbox]');
    selectAll.checked = boxes.length > 0 && selected.size === boxes.length;
  }

  async function load() {
    const n = Math.max(1, Math.min(10000, Number(limit.value) || 100));
    let letters;
    try {
      letters = await api.deadLetters(name, n);
    } catch (err) {
      status.textContent = `Dead letters unavailable: ${err.message}`;
      return;
    }
    const ids = new Set(letters.map((l) => l.id));
    for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
    fill(tbody, letters.map((l) => {
      const box = h('input', {
        type: 'checkbox', checked: selected.has(l.id), 'aria-label': `Select ${l.id}`,
        value: l.id,
      });
      box.addEventListener('change', () => {
        if (box.checked) selected.add(l.id);
        else selected.delete(l.id);
        syncSelection();
      });
      return h('tr', { 'data-id': l.id },
        h('td', { 'data-label': 'Select' }, box),
        h('td', { class: 'mono', 'data-label': 'Id' }, l.id),
        h('td', { class: 'payload mono', 'data-label': 'Payload', title: l.payload }, l.payload),
        h('td', { class: 'num', 'data-label': 'Priority' }, String(l.priority)),
        h('td', { class: 'num', 'data-label': 'Retries' }, fmtInt(l.retry_count)),
        h('td', { 'data-label': 'Dead since' }, fmtTime(l.dead_lettered_at_ms)));
    }));
    status.textContent = letters.length
      ? `Showing ${letters.length} dead letter${letters.length === 1 ? '' : 's'}, oldest first.`
      : 'No dead letters.';
    syncSelection();
  }

  async function act(work) {
    try {
      await work();
    } catch (err) {
      notifyError(err);
    }
    changed();
    await load();
  }

  selectAll.addEventListener('change', () => {
    for (const box of tbody.querySelectorAll('input[type=checkbox]')) {
      box.checked = selectAll.checked;
      if (box.checked) selected.add(box.value);
      else selected.delete(box.value);
    }
    syncSelection();
  });
  redriveSelected.addEventListener('click', () => act(async () => {
    const reply = await api.redrive(name, [...selected]);
    selected.clear();
    notify(`${countOf(reply.redriven, 'dead letter')} redriven into ${name}.`, 'success');
  }));
  redriveAll.addEventListener('click', () => act(async () => {
    const reply = await api.redrive(name);
    notify(`${countOf(reply.redriven, 'dead letter')} redriven into ${name}.`, 'success');
  }));
  purgeAll.addEventListener('click', async () => {
    const question = `Drop every dead letter of “${name}” for good?`;
    if (!await confirmAction('Purge dead letters', question, 'Purge')) return;
    await act(async () => {
      const reply = await api.purgeDeadLetters(name);
      notify(`${countOf(reply.purged, 'dead letter')} purged.`, 'success');
    });
  });
  limit.addEventListener('change', load);

  const el = h('section', { class: 'panel dlq', 'aria-labelledby': 'dlq-h' },
    h('h2', { id: 'dlq-h' }, 'Dead letters'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'dlq-limit' }, 'Show up to'), limit,
      h('button', { type: 'button', onclick: load }, 'Reload'),
      redriveSelected, redriveAll, purgeAll),
    status,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'cards' },
        h('caption', { class: 'sr-only' }, 'Dead letters, oldest first'),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, selectAll),
          h('th', { scope: 'col' }, 'Id'),
          h('th', { scope: 'col' }, 'Payload'),
          h('th', { scope: 'col', class: 'num' }, 'Priority'),
          h('th', { scope: 'col', class: 'num' }, 'Retries'),
          h('th', { scope: 'col' }, 'Dead since'))),
        tbody)));
  return { el, load };
}
