// The web UI in a real browser: headless Chromium drives the pages of a freshly started
// server (in-memory storage) the way an operator would, while messages move through the
// HTTP API behind its back. Screenshots of each page land in tests/ui/screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const shots = path.join(here, 'screenshots');
const bin = process.env.QRUSTY_BIN || path.join(root, 'target/debug/qrusty');
const QUEUE = 'ui-orders';
const WAIT_MS = 15000;

let server;
let base;
let context;
let page;
let profile;
const outsideRequests = [];
const pageErrors = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function api(method, route, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(base + route, { ...init, signal: AbortSignal.timeout(5000) });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${route} -> ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function waitForServer() {
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`server exited with ${server.exitCode}`);
    try {
      const r = await fetch(base + '/health', { signal: AbortSignal.timeout(1000) });
      if (r.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('server did not answer /health within 20 s');
}

/** Waits until `locator`'s trimmed text equals `expected`; fails with the last text seen. */
async function waitText(locator, expected, what) {
  const deadline = Date.now() + WAIT_MS;
  let seen;
  while (Date.now() < deadline) {
    seen = (await locator.textContent({ timeout: WAIT_MS }).catch(() => null))?.trim();
    if (seen === expected) return;
    await page.waitForTimeout(100);
  }
  assert.fail(`${what}: expected "${expected}", last saw "${seen}"`);
}

/** Saves a screenshot after dismissing the notices, which would cover the page. */
async function shot(name, fullPage = true) {
  await page.evaluate(() => document.getElementById('notices').replaceChildren());
  await page.screenshot({ path: path.join(shots, name), fullPage });
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;

  const env = { ...process.env, STORAGE_MODE: 'memory', BIND_ADDR: `127.0.0.1:${port}` };
  env.RUST_LOG = 'info';
  // The embedded assets are what ships; a WEBUI_DIR from the caller's shell would hide them.
  delete env.WEBUI_DIR;
  delete env.QRUSTY_API_TOKEN;
  server = spawn(bin, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(path.join(shots, 'server.log'));
  server.stdout.pipe(log);
  server.stderr.pipe(log);
  await waitForServer();

  profile = mkdtempSync(path.join(tmpdir(), 'qrusty-ui-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  context.on('request', (request) => {
    const url = new URL(request.url());
    if (!['http:', 'ws:'].includes(url.protocol) || url.hostname !== '127.0.0.1') {
      if (url.protocol !== 'data:') outsideRequests.push(request.url());
    }
  });
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  page.on('console', (msg) => {
    // A refused API call is logged by Chromium itself; the UI showing it is what we check.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      pageErrors.push(msg.text());
    }
  });
});

after(async () => {
  if (context) await context.close();
  try {
    rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  } catch (err) {
    // Chromium's helpers may still be writing there; a stray temp dir fails nothing.
    console.error(`left ${profile} behind: ${err.message}`);
  }
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((resolve) => {
      const force = setTimeout(() => { server.kill('SIGKILL'); resolve(); }, 5000);
      server.once('exit', () => { clearTimeout(force); resolve(); });
    });
  }
});

// Verifies: SYS-0023
test('the overview of an empty server says there are no queues', async () => {
  const response = await page.goto(base + '/ui');

  assert.equal(response.status(), 200);
  await page.locator('.empty-state').waitFor({ state: 'visible' });
  await waitText(page.locator('.tile', { hasText: 'Queues' }).locator('dd'), '0', 'queue tile');
});

// Verifies: SYS-0023
test('a queue created through the form exists with the chosen config', async () => {
  await page.getByRole('link', { name: 'Administration', exact: true }).click();
  await page.locator('#new-name').fill(QUEUE);
  await page.locator('#new-ordering').selectOption('MinFirst');
  await page.locator('#new-kind').selectOption('Numeric');
  await page.locator('#new-dups').uncheck();
  await page.getByRole('button', { name: 'Create queue' }).click();

  await page.locator('.notice.success', { hasText: `Queue ${QUEUE} created.` }).waitFor();
  const stats = await api('GET', `/queue-stats/${QUEUE}`);
  assert.equal(stats.config.ordering, 'MinFirst');
  assert.equal(stats.config.allow_duplicates, false);
  assert.equal(stats.config.priority_kind, 'Numeric');
  await page.locator(`details.edit[data-queue="${QUEUE}"]`).waitFor();
});

// Verifies: SYS-0023
test('creating it again shows the server error with its code', async () => {
  await page.locator('#new-name').fill(QUEUE);
  await page.getByRole('button', { name: 'Create queue' }).click();

  const error = page.locator('.notice.error').last();
  await error.waitFor();
  assert.match(await error.textContent(), /^409: .+ \([a-z_]+\)/);
  await shot('admin.png');
});

// Verifies: SYS-0023
test('the overview lists the queue and follows its counts live', async () => {
  await page.getByRole('link', { name: 'Overview', exact: true }).click();
  const row = page.locator(`tr[data-queue="${QUEUE}"]`);
  await waitText(row.locator('td[data-col="total"]'), '0', 'total before publishing');

  for (let i = 1; i <= 5; i++) {
    await api('POST', '/publish', { queue: QUEUE, priority: i, payload: `order-${i}` });
  }
  for (let i = 0; i < 2; i++) {
    const got = await api('POST', `/consume/${QUEUE}`,
      { consumer_id: 'ui-test', timeout_seconds: 600 });
    assert.equal(got.payload, `order-${i + 1}`);
  }

  await waitText(row.locator('td[data-col="total"]'), '5', 'total');
  await waitText(row.locator('td[data-col="locked"]'), '2', 'locked');
  await waitText(row.locator('td[data-col="available"]'), '3', 'available');
  await row.locator('td[data-col="trend"] svg.spark path').waitFor();
  await shot('overview.png');
});

// Verifies: SYS-0023
test('the queue page draws its charts with distinguishable traces', async () => {
  await page.locator(`tr[data-queue="${QUEUE}"]`).getByRole('link', { name: QUEUE }).click();

  assert.equal(new URL(page.url()).pathname, `/ui/queues/${QUEUE}`);
  await waitText(page.locator('h1'), QUEUE, 'heading');
  await waitText(page.locator('[data-tile="locked"] dd'), '2', 'locked tile');
  const depth = page.locator('#chart-depth svg.chart');
  const rates = page.locator('#chart-rates svg.chart');
  // A trace flat at zero has no height, so Playwright calls it hidden: wait for it to exist.
  const attached = { state: 'attached' };
  await depth.locator('[data-trace="total"] path.line').waitFor(attached);
  await depth.locator('[data-trace="locked"] path.line').waitFor(attached);
  for (const key of ['publish_rate_per_sec', 'ack_rate_per_sec', 'nack_rate_per_sec']) {
    await rates.locator(`[data-trace="${key}"] path.line`).waitFor(attached);
  }

  // Told apart without colour: each trace of a chart has its own dash and marker shape.
  const looks = await rates.locator('.trace').evaluateAll((traces) => traces.map((t) =>
    `${t.querySelector('path.line').getAttribute('stroke-dasharray')}|` +
    `${t.querySelector('.marks > *').tagName}`));
  assert.equal(new Set(looks).size, 3, `trace looks: ${looks}`);
  await waitText(page.locator('#chart-depth .legend li').first(), 'Total: 5', 'legend');
});

// Verifies: SYS-0023
test('a dead letter is listed and redriven from the queue page', async () => {
  const poison = await api('POST', '/publish',
    { queue: QUEUE, priority: 0, payload: 'poison', max_retries: 0 });
  const got = await api('POST', `/consume/${QUEUE}`,
    { consumer_id: 'ui-test', timeout_seconds: 60 });
  assert.equal(got.id, poison.id);
  await api('POST', `/nack/${QUEUE}/${poison.id}`, { consumer_id: 'ui-test' });

  const row = page.locator(`.dlq tr[data-id="${poison.id}"]`);
  await row.waitFor();
  assert.match(await row.textContent(), /poison/);
  await waitText(page.locator('[data-tile="dead_lettered"] dd'), '1', 'dead-lettered tile');
  await page.waitForTimeout(2500); // a couple of samples more, so the charts show a trend
  await shot('queue.png');

  await row.getByRole('checkbox').check();
  await page.getByRole('button', { name: 'Redrive selected (1)' }).click();

  const done = `1 dead letter redriven into ${QUEUE}`;
  await page.locator('.notice.success', { hasText: done }).waitFor();
  await row.waitFor({ state: 'detached' });
  assert.deepEqual(await api('GET', `/dlq/${QUEUE}?limit=10`), []);
  await waitText(page.locator('[data-tile="available"] dd'), '4', 'available after redrive');
  await waitText(page.locator('[data-tile="dead_lettered"] dd'), '0', 'dead-lettered tile');
});

// Verifies: SYS-0023
test('allow_duplicates is edited on the queue page', async () => {
  const form = page.locator(`form.settings[data-queue="${QUEUE}"]`);
  await waitText(form.locator('[data-field="ordering"]'), 'MinFirst', 'ordering shown');
  await form.getByLabel('Allow duplicate payloads').check();
  await form.getByRole('button', { name: 'Save' }).click();

  await page.locator('.notice.success', { hasText: `Queue ${QUEUE} saved.` }).waitFor();
  const stats = await api('GET', `/queue-stats/${QUEUE}`);
  assert.equal(stats.config.allow_duplicates, true);
  assert.equal(stats.config.ordering, 'MinFirst');
});

// Verifies: SYS-0023
test('purge asks first, and cancelling keeps the messages', async () => {
  await page.getByRole('button', { name: 'Purge messages…' }).click();
  await page.locator('dialog#confirm').getByRole('button', { name: 'Cancel' }).click();
  await page.waitForTimeout(300);
  assert.equal((await api('GET', `/queue-stats/${QUEUE}`)).total, 6);

  await page.getByRole('button', { name: 'Purge messages…' }).click();
  await page.locator('dialog#confirm').getByRole('button', { name: 'Purge' }).click();

  await waitText(page.locator('[data-tile="total"] dd'), '0', 'total after purge');
});

// Verifies: SYS-0023, WS-0018
test('the log pane streams the server log over the WebSocket', async () => {
  await page.getByRole('button', { name: 'Logs' }).click();

  await waitText(page.locator('#logs-state'), 'live', 'log stream state');
  await page.locator('#logs-lines li.log').first().waitFor();
  await shot('logs.png', false);
});

// Verifies: SYS-0023, API-0027
test('pages are usable at phone width, deep links included', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const response = await page.goto(`${base}/ui/queues/${QUEUE}`);

  assert.equal(response.status(), 200);
  await page.locator('#chart-depth svg.chart').waitFor();
  await shot('queue-phone.png');
  await page.goto(base + '/ui/');
  await page.locator(`tr[data-queue="${QUEUE}"]`).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone screen`);
  await shot('overview-phone.png');
  await page.setViewportSize({ width: 1280, height: 800 });
});

// Verifies: SYS-0023
test('the keyboard reaches the navigation and the create form', async () => {
  await page.goto(base + '/ui/admin');
  await page.locator('#new-name').waitFor();

  const reached = new Set();
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    reached.add(await page.evaluate(() => document.activeElement.id ||
      document.activeElement.textContent.trim()));
  }
  for (const target of ['Overview', 'Administration', 'new-name', 'new-ordering', 'Create queue']) {
    assert.ok(reached.has(target), `Tab never reached ${target}: ${[...reached]}`);
  }
});

test('the UI made no request outside the server and raised no script error', () => {
  assert.deepEqual(outsideRequests, []);
  assert.deepEqual(pageErrors, []);
});
