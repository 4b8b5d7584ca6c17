// The REAL Socket.IO Admin UI against hubbub: the built dashboard that the
// @socket.io/admin-ui npm package ships (node_modules/@socket.io/admin-ui/ui/dist, never
// committed) is served from this test on a loopback port and driven in headless Chromium
// (the system's /usr/bin/chromium through playwright-core, a fresh profile): log in, see
// the server and the connected chat sockets, disconnect one from the UI and check that
// the chat client was disconnected, reload without being asked for the password again.
// Saves the screenshot docs/admin-ui.png. Every request leaves for 127.0.0.1 only: the
// page's CDN stylesheet for icons is answered from the @mdi/font package, web fonts are
// refused (the UI falls back to the system's).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { io } = require('socket.io-client');

const ROOT = path.resolve(__dirname, '..', '..');
const SERVER_BIN = process.env.HUBBUB_SERVER_BIN || path.join(ROOT, 'target', 'debug', 'hubbub-server');
const CHROMIUM = process.env.HUBBUB_CHROMIUM || '/usr/bin/chromium';
const UI_DIST = path.join(__dirname, 'node_modules', '@socket.io', 'admin-ui', 'ui', 'dist');
const MDI = path.join(__dirname, 'node_modules', '@mdi', 'font');
const SCREENSHOT = path.join(ROOT, 'docs', 'admin-ui.png');
const USER = 'admin';
const PASSWORD = 'hubbub-admin-pw';
/** bcrypt (cost 10, as an operator would make it) of PASSWORD. */
const HASH = '$2b$10$1j.KaBXaLiEQvlJVQ9KjtOPVIxkabtxbCzDV4qQkstWteRwDxNlem';
const TIMEOUT = 20000;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png',
  '.svg': 'image/svg+xml', '.map': 'application/json', '.woff2': 'font/woff2', '.woff': 'font/woff',
  '.ttf': 'font/ttf', '.eot': 'application/vnd.ms-fontobject',
};

/** Serves the dashboard's files from `dir` on 127.0.0.1; resolves with the server and its URL. */
async function serveStatic(dir) {
  if (!fs.existsSync(path.join(dir, 'index.html'))) {
    throw new Error(dir + ' is missing: run `npm ci` in tests/admin-ui');
  }
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = path.join(dir, rel === '/' ? 'index.html' : rel);
    if (!file.startsWith(dir) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

/** Starts hubbub-server with `args`; resolves once it logged the address it listens on. */
async function startHubbub(args) {
  if (!fs.existsSync(SERVER_BIN)) {
    throw new Error(SERVER_BIN + ' is missing: build it with `cargo build -p hubbub-server`');
  }
  const port = await freePort();
  const proc = spawn(SERVER_BIN, ['--bind', `127.0.0.1:${port}`, '--log-format', 'json', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let logs = '';
  proc.stderr.setEncoding('utf8');
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('hubbub-server did not start:\n' + logs)), TIMEOUT);
    proc.on('exit', (code) => reject(new Error(`hubbub-server exited with ${code}:\n${logs}`)));
    proc.stderr.on('data', (c) => {
      logs += c;
      if (logs.includes('hubbub-server listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return {
    proc,
    url: `http://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await once(proc, 'exit').catch(() => {});
    },
  };
}

/** A chat client on `/`, resolved once connected. */
function chatClient(url) {
  const s = io(url, { transports: ['websocket'], reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  });
}

test('the official Admin UI logs in, shows the server and the sockets, and disconnects a chat socket', async () => {
  const ui = await serveStatic(UI_DIST);
  const hubbub = await startHubbub([
    '--admin-ui', '--admin-username', USER, '--admin-password-hash', HASH,
    '--admin-mode', 'development', '--cors-origins', ui.url,
  ]);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hubbub-admin-ui-chromium-'));
  const clients = [];
  let context;
  try {
    const alice = await chatClient(hubbub.url);
    const bob = await chatClient(hubbub.url);
    clients.push(alice, bob);
    await alice.emitWithAck('join', 'alice');
    await bob.emitWithAck('join', 'bob');

    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run',
      ],
      viewport: { width: 1280, height: 800 },
    });
    await context.route('**/*', async (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === '127.0.0.1') return route.continue();
      const mdi = url.hostname === 'cdn.jsdelivr.net' && url.pathname.match(/\/@mdi\/font@[^/]+\/(.+)$/);
      if (mdi && fs.existsSync(path.join(MDI, mdi[1]))) {
        return route.fulfill({
          path: path.join(MDI, mdi[1]),
          contentType: TYPES[path.extname(mdi[1])] || 'application/octet-stream',
        });
      }
      return route.abort();
    });
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));

    await page.goto(ui.url + '/#/');
    // The login modal: a wrong password first, as the UI reports it.
    await page.getByLabel('Server URL').fill(hubbub.url);
    await page.getByLabel('Username').fill(USER);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.getByText('invalid credentials').waitFor();
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.getByRole('button', { name: 'Connect' }).waitFor({ state: 'detached' });

    // The server, by its id (hostname#pid), on the servers page.
    const serverId = `${os.hostname()}#${hubbub.proc.pid}`;
    await page.goto(ui.url + '/#/servers/');
    await page.getByText(serverId).first().waitFor();

    // The chat sockets on the sockets page (namespace "/" is selected by default).
    await page.goto(ui.url + '/#/sockets/');
    const aliceRow = page.locator('tr', { hasText: alice.id }).first();
    const bobRow = page.locator('tr', { hasText: bob.id }).first();
    await aliceRow.waitFor();
    await bobRow.waitFor();
    await aliceRow.getByText('127.0.0.1').waitFor();

    // Disconnect bob from the UI (the row's disconnect button): his chat client is told
    // by the server, and the UI drops him from the list.
    const bobId = bob.id;
    const bobGone = once(bob, 'disconnect');
    await bobRow.locator('button').last().click();
    const [reason] = await bobGone;
    assert.equal(reason, 'io server disconnect');
    await page.goto(ui.url + '/#/sockets/');
    await aliceRow.waitFor();
    await page.locator('tr', { hasText: bobId }).first().waitFor({ state: 'detached' });
    assert.ok(alice.connected, 'alice is untouched');

    // A reload keeps the session: no login modal, the sockets come back.
    await page.reload();
    await page.locator('tr', { hasText: alice.id }).first().waitFor();
    assert.equal(await page.getByRole('button', { name: 'Connect' }).count(), 0, 'not asked to log in again');

    // The dashboard with the server, its clients and namespaces: the README's picture.
    await page.goto(ui.url + '/#/');
    await page.getByText('/admin', { exact: true }).first().waitFor();
    await page.screenshot({ path: SCREENSHOT, animations: 'disabled' });
    assert.deepEqual(pageErrors, []);
  } finally {
    for (const c of clients) c.close();
    if (context) await context.close();
    await hubbub.stop();
    ui.server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});
