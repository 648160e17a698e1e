// Administration: create queues, edit any queue, and the server-wide purge and delete.

import { api } from './api.js';
import { h, fill, countOf, queueHref, confirmAction, notify, notifyError } from './dom.js';
import { settingsForm } from './queue.js';

export function adminPage() {
  let editList;
  let shownNames = '';

  function createForm() {
    const name = h('input', {
      id: 'new-name', name: 'name', required: true, maxlength: 255, autocomplete: 'off',
      spellcheck: 'false', placeholder: 'orders',
    });
    const ordering = h('select', { id: 'new-ordering', name: 'ordering' },
      h('option', { value: 'MaxFirst' }, 'MaxFirst: highest priority first'),
      h('option', { value: 'MinFirst' }, 'MinFirst: lowest priority first'),
      h('option', { value: 'Fifo' }, 'Fifo: publish order'));
    const kind = h('select', { id: 'new-kind', name: 'priority_kind' },
      h('option', { value: 'Numeric' }, 'Numeric (0 to 2⁶⁴−1)'),
      h('option', { value: 'Text' }, 'Text (compared byte by byte)'));
    const dups = h('input', {
      id: 'new-dups', type: 'checkbox', name: 'allow_duplicates', checked: true,
    });
    const submit = h('button', { type: 'submit' }, 'Create queue');

    const form = h('form', { id: 'create-queue', class: 'settings' },
      h('div', { class: 'field' }, h('label', { for: 'new-name' }, 'Name'), name,
        h('small', { class: 'muted' }, '1–255 bytes, no “/”, not starting with “_”.')),
      h('div', { class: 'field' }, h('label', { for: 'new-ordering' }, 'Ordering'), ordering),
      h('div', { class: 'field' }, h('label', { for: 'new-kind' }, 'Priority kind'), kind),
      h('div', { class: 'field check' }, dups,
        h('label', { for: 'new-dups' }, 'Allow duplicate payloads')),
      h('p', { class: 'muted' }, 'Ordering and priority kind cannot be changed later.'),
      h('div', { class: 'actions' }, submit));

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      submit.disabled = true;
      const queue = name.value;
      try {
        await api.createQueue(queue, {
          ordering: ordering.value, priority_kind: kind.value, allow_duplicates: dups.checked,
        });
        notify(`Queue ${queue} created.`, 'success');
        name.value = '';
        shownNames = '';
      } catch (err) {
        notifyError(err);
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  async function purgeAll() {
    if (!await confirmAction('Purge all queues',
      'Remove every message of every queue, locked ones too? The queues stay.', 'Purge all')) {
      return;
    }
    try {
      const r = await api.purgeAll();
      const where = countOf(r.purged_queues, 'queue');
      notify(`${countOf(r.purged_messages, 'message')} purged in ${where}.`, 'success');
    } catch (err) {
      notifyError(err);
    }
  }

  async function deleteAll() {
    if (!await confirmAction('Delete all queues',
      'Delete every queue with its messages and dead letters? This cannot be undone.',
      'Delete all')) {
      return;
    }
    try {
      const r = await api.deleteAll();
      const lost = countOf(r.deleted_messages, 'message');
      notify(`${countOf(r.deleted_queues, 'queue')} deleted, with ${lost}.`, 'success');
      shownNames = '';
    } catch (err) {
      notifyError(err);
    }
  }

  return {
    title: 'Administration',
    mount(main) {
      editList = h('div', { class: 'edit-list' }, h('p', { class: 'muted' }, 'Loading…'));
      fill(main,
        h('h1', {}, 'Administration'),
        h('div', { class: 'columns' },
          h('section', { class: 'panel', 'aria-labelledby': 'create-h' },
            h('h2', { id: 'create-h' }, 'Create a queue'), createForm()),
          h('section', { class: 'panel', 'aria-labelledby': 'all-h' },
            h('h2', { id: 'all-h' }, 'All queues'),
            h('p', { class: 'muted' }, 'These act on every queue and ask for confirmation first.'),
            h('div', { class: 'actions' },
              h('button', { type: 'button', class: 'danger', onclick: purgeAll }, 'Purge all…'),
              h('button', { type: 'button', class: 'danger', onclick: deleteAll },
                'Delete all…')))),
        h('section', { class: 'panel', 'aria-labelledby': 'edit-h' },
          h('h2', { id: 'edit-h' }, 'Edit queues'), editList));
    },
    async refresh() {
      const { queues = [] } = await api.stats();
      // Rebuilt only when the set of queues changes, so typing in a form is never undone.
      const names = JSON.stringify(queues.map((q) => [q.name, q.config]));
      if (names === shownNames) return;
      shownNames = names;
      if (!queues.length) {
        fill(editList, h('p', { class: 'muted' }, 'No queues yet.'));
        return;
      }
      fill(editList, queues.map((q) => h('details', { class: 'edit', 'data-queue': q.name },
        h('summary', {}, q.name, ' ', h('small', { class: 'muted' },
          `${q.config.ordering}, ${q.config.priority_kind ?? 'Numeric'}, ` +
          `${q.config.allow_duplicates ? 'duplicates allowed' : 'no duplicates'}`)),
        settingsForm(q, () => { shownNames = ''; }),
        h('p', {}, h('a', { href: queueHref(q.name) }, `Open ${q.name}`)))));
    },
  };
}
