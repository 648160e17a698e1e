// Small DOM helpers shared by the pages: element building, number formatting, the
// confirmation dialog and the notice area.

/**
 * Builds an element. `attrs` keys starting with "on" become listeners; `class`, `for`,
 * boolean and data-/aria- attributes are set as attributes. Children may be strings,
 * nodes, or arrays of them; null and false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value' || key === 'checked') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces every child of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const intFormat = new Intl.NumberFormat('en-US');

export function fmtInt(n) {
  return intFormat.format(n ?? 0);
}

/** "1 message", "3 messages". */
export function countOf(n, noun) {
  return `${fmtInt(n)} ${noun}${n === 1 ? '' : 's'}`;
}

export function fmtRate(r) {
  const value = Number(r ?? 0);
  return value >= 100 ? value.toFixed(0) : value.toFixed(value >= 10 ? 1 : 2);
}

export function fmtTime(ms) {
  if (!ms) return '';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** The path of the app page of queue `name`. */
export function queueHref(name) {
  return '/ui/queues/' + encodeURIComponent(name);
}

/**
 * Asks the user to confirm `text` in a modal dialog; resolves true on Confirm. The dialog
 * is a native <dialog>, so focus is trapped in it and Escape cancels.
 */
export function confirmAction(title, text, okLabel = 'Confirm') {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = okLabel;
  dialog.returnValue = 'cancel';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

/** Shows a notice at the top of the page; errors stay until dismissed. */
export function notify(text, kind = 'info') {
  const area = document.getElementById('notices');
  const close = h('button', { type: 'button', class: 'close', 'aria-label': 'Dismiss' }, '×');
  const notice = h('div', { class: 'notice ' + kind, 'data-kind': kind },
    h('span', {}, text), close);
  close.addEventListener('click', () => notice.remove());
  area.append(notice);
  if (kind !== 'error') setTimeout(() => notice.remove(), 5000);
  // Keep the area short: the oldest notices go first.
  while (area.children.length > 4) area.firstElementChild.remove();
}

/** Shows an API error: its human text and its stable code. */
export function notifyError(err) {
  const code = err && err.code ? ` (${err.code})` : '';
  notify(`${err && err.message ? err.message : err}${code}`, 'error');
}
