// The log pane: the server's log lines over the WebSocket `subscribe-logs` stream.
// The socket opens the first time the pane is shown and then stays, reconnecting with
// backoff, so lines keep arriving while the pane is folded away.

import { wsUrl } from './api.js';
import { h } from './dom.js';

const RANK = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4 };
const MAX_LINES = 2000;

export function initLogs() {
  const pane = document.getElementById('logs');
  const toggle = document.getElementById('logs-toggle');
  const list = document.getElementById('logs-lines');
  const state = document.getElementById('logs-state');
  const level = document.getElementById('logs-level');
  const follow = document.getElementById('logs-follow');
  let socket = null;
  let retryMs = 500;

  function visible(lineLevel) {
    return (RANK[lineLevel] ?? RANK.INFO) >= RANK[level.value];
  }

  function setState(text, kind) {
    state.textContent = text;
    state.dataset.state = kind;
  }

  function add(frame) {
    const when = String(frame.timestamp || '').replace('T', ' ').replace(/(\.\d{3})\d*/, '$1');
    const kind = String(frame.level).toLowerCase();
    const li = h('li', { class: `log ${kind}`, 'data-level': frame.level },
      h('time', {}, when), ' ', h('b', { class: 'level' }, frame.level), ' ',
      h('span', { class: 'msg' }, frame.message));
    li.hidden = !visible(frame.level);
    list.append(li);
    while (list.children.length > MAX_LINES) list.firstElementChild.remove();
    if (follow.checked) list.scrollTop = list.scrollHeight;
  }

  function connect() {
    setState('connecting…', 'pending');
    socket = new WebSocket(wsUrl());
    socket.addEventListener('open', () => {
      // The server replays its recent history on subscribe: start from a clean list so a
      // reconnect does not show those lines twice.
      list.replaceChildren();
      socket.send(JSON.stringify({ type: 'subscribe-logs', req_id: 'logs' }));
    });
    socket.addEventListener('message', (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === 'log') add(frame);
      else if (frame.type === 'ok' && frame.req_id === 'logs') {
        retryMs = 500;
        setState('live', 'ok');
      } else if (frame.type === 'error') {
        setState(`unavailable: ${frame.message || frame.code}`, 'error');
      }
    });
    socket.addEventListener('close', () => {
      setState(`disconnected, retrying in ${Math.round(retryMs / 1000)} s`, 'error');
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    });
  }

  toggle.addEventListener('click', () => {
    const open = pane.hidden;
    pane.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    document.body.classList.toggle('with-logs', open);
    if (open && !socket) connect();
    if (open) list.scrollTop = list.scrollHeight;
  });
  level.addEventListener('change', () => {
    for (const li of list.children) li.hidden = !visible(li.dataset.level);
  });
  document.getElementById('logs-clear').addEventListener('click', () => list.replaceChildren());
  window.addEventListener('qrusty:token', () => socket && socket.close());
}
