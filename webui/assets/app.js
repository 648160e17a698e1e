// The app shell: routing between pages by URL (so every page has a link that can be
// bookmarked), the refresh loop that keeps the current page live, and the token prompt.

import { onUnauthorized, setToken } from './api.js';
import { h, fill } from './dom.js';
import { initLogs } from './logs.js';
import { overviewPage } from './overview.js';
import { queuePage } from './queue.js';
import { adminPage } from './admin.js';

const REFRESH_MS = 2000;

const main = document.getElementById('main');
const live = document.getElementById('live');
let current = null;
let timer = null;
let generation = 0;

function route(pathname) {
  const path = pathname.replace(/^\/ui\/?/, '').replace(/\/+$/, '');
  if (path === '') return { page: 'overview', make: () => overviewPage() };
  if (path === 'admin') return { page: 'admin', make: () => adminPage() };
  const queue = path.match(/^queues\/(.+)$/);
  if (queue) {
    const name = decodeURIComponent(queue[1]);
    return { page: 'queue', make: () => queuePage(name) };
  }
  return { page: 'missing', make: () => missingPage() };
}

function missingPage() {
  return {
    title: 'Not found',
    mount(el) {
      fill(el, h('h1', {}, 'Page not found'),
        h('p', {}, 'Nothing lives at this address. ',
          h('a', { href: '/ui/' }, 'Go to the overview.')));
    },
  };
}

async function show() {
  const { page, make } = route(location.pathname);
  if (current && current.unmount) current.unmount();
  clearTimeout(timer);
  generation += 1;

  current = make();
  document.title = `${current.title} · Qrusty`;
  for (const link of document.querySelectorAll('nav a[data-page]')) {
    if (link.dataset.page === page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  main.replaceChildren();
  current.mount(main);
  tick(generation);
}

/** Refreshes the current page, then schedules the next refresh (never two at once). */
async function tick(gen) {
  if (gen !== generation) return;
  if (current.refresh && !document.hidden) {
    try {
      await current.refresh();
      live.textContent = 'live · ' + new Date().toLocaleTimeString();
      live.dataset.state = 'ok';
    } catch (err) {
      live.textContent = 'offline: ' + (err.message || err);
      live.dataset.state = 'error';
    }
  }
  if (gen === generation) timer = setTimeout(() => tick(gen), REFRESH_MS);
}

export function navigate(href) {
  history.pushState(null, '', href);
  show().then(() => main.focus({ preventScroll: true }));
  window.scrollTo(0, 0);
}

document.addEventListener('click', (event) => {
  const link = event.target.closest('a[href]');
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui')) return;
  event.preventDefault();
  navigate(url.pathname);
});

window.addEventListener('popstate', show);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) {
    clearTimeout(timer);
    tick(generation);
  }
});
window.addEventListener('qrusty:navigate', (event) => navigate(event.detail));

const tokenForm = document.getElementById('token-form');
onUnauthorized(() => {
  tokenForm.hidden = false;
});
tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  setToken(document.getElementById('token-input').value.trim());
  tokenForm.hidden = true;
  show();
  window.dispatchEvent(new Event('qrusty:token'));
});

initLogs();
show();
