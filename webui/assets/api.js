// The HTTP API as the pages use it. Every call goes to the server that served the page.
// Errors come back as ApiError carrying the server's {"error","code"} body when it sent one.

const TOKEN_KEY = 'qrusty.token';

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The bearer token for servers started with QRUSTY_API_TOKEN; kept for this tab only. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

const unauthorizedListeners = new Set();

/** `fn` runs whenever a call is refused with 401, so the page can ask for a token. */
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
}

async function call(method, path, body) {
  const headers = {};
  if (token()) headers.Authorization = 'Bearer ' + token();
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }

  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'server unreachable', 'network');
  }

  const text = await response.text();
  if (!response.ok) {
    if (response.status === 401) unauthorizedListeners.forEach((fn) => fn());
    throw errorFrom(response, text);
  }
  return text ? JSON.parse(text) : null;
}

function errorFrom(response, text) {
  let message = text || response.statusText || 'request failed';
  let code = `http_${response.status}`;
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === 'string') message = body.error;
    if (body && typeof body.code === 'string') code = body.code;
  } catch {
    // Not JSON: older servers send plain text or nothing; the status says enough.
  }
  return new ApiError(response.status, `${response.status}: ${message}`, code);
}

const q = encodeURIComponent;

export const api = {
  stats: () => call('GET', '/stats'),
  queueStats: (name) => call('GET', `/queue-stats/${q(name)}`),
  metrics: (name) => call('GET', `/queues/${q(name)}/metrics`),
  createQueue: (name, config) => call('POST', '/create-queue', { name, config }),
  updateQueue: (name, config) => call('POST', '/update-queue', { name, config }),
  deleteQueue: (name) => call('DELETE', `/delete-queue/${q(name)}`),
  purgeQueue: (name) => call('POST', `/purge-queue/${q(name)}`),
  purgeAll: () => call('POST', '/purge-all'),
  deleteAll: () => call('POST', '/delete-all'),
  deadLetters: (name, limit) => call('GET', `/dlq/${q(name)}?limit=${limit}`),
  redrive: (name, ids) => call('POST', `/dlq/${q(name)}/redrive`, ids ? { ids } : {}),
  purgeDeadLetters: (name) => call('POST', `/dlq/${q(name)}/purge`),
};

/** The WebSocket URL of this server, with the token when one is set. */
export function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const auth = token() ? '?token=' + q(token()) : '';
  return `${scheme}//${location.host}/ws${auth}`;
}
