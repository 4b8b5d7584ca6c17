// Shared helpers for the browser tests: start hubbub-server on a free loopback port, launch the
// system's Chromium through playwright-core (never a downloaded browser), and drive the page.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
const SERVER_BIN = process.env.HUBBUB_SERVER_BIN || path.join(ROOT, 'target', 'debug', 'hubbub-server');
const CHROMIUM = process.env.HUBBUB_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const TIMEOUT = 20000;

/** A TCP port that was free a moment ago on 127.0.0.1. */
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

function httpGet(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(2000, () => req.destroy(new Error('timeout')));
  });
}

/** hubbub-server as a child process; `start()` resolves once /healthz answers 200. */
class HubbubServer {
  constructor(extraArgs = []) {
    this.extraArgs = extraArgs;
    this.port = null;
    this.proc = null;
    this.output = '';
  }
  get url() { return 'http://127.0.0.1:' + this.port; }

  async start(port) {
    if (!fs.existsSync(SERVER_BIN)) {
      throw new Error(SERVER_BIN + ' is missing: build it with `cargo build -p hubbub-server`');
    }
    this.port = port || this.port || await freePort();
    const args = ['--bind', '127.0.0.1:' + this.port, '--shutdown-grace-secs', '2', ...this.extraArgs];
    const proc = this.proc = spawn(SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout.on('data', (c) => { this.output += c; });
    proc.stderr.on('data', (c) => { this.output += c; });
    const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    const deadline = Date.now() + TIMEOUT;
    let lastError;
    // Wait for the server to answer (each round waits for a real HTTP answer or refusal).
    while (Date.now() < deadline) {
      const early = await Promise.race([exited, Promise.resolve(null)]);
      if (early) throw new Error('hubbub-server exited early (' + JSON.stringify(early) + '):\n' + this.output);
      try {
        const res = await httpGet(this.url + '/healthz');
        if (res.status === 200) return this;
        lastError = new Error('/healthz answered ' + res.status);
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 50)); // connection refused: poll again shortly
      }
    }
    throw new Error('hubbub-server did not become healthy: ' + lastError + '\n' + this.output);
  }

  /** SIGKILL (a crash: nothing is drained), then wait for the process to exit. */
  async kill() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** Waits until /readyz answers 200 (with Redis: the link and subscriptions are up). */
  async waitReady() {
    const deadline = Date.now() + TIMEOUT;
    while (Date.now() < deadline) {
      const res = await httpGet(this.url + '/readyz').catch(() => null);
      if (res && res.status === 200) return;
      await new Promise((r) => setTimeout(r, 50)); // readiness is polled: there is no event
    }
    throw new Error('hubbub-server did not become ready:\n' + this.output);
  }

  /** SIGTERM, then wait for the process to exit. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(timer);
  }
}

async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(CHROMIUM + ' is missing: install the Debian package `chromium` (apt-get install chromium)');
  }
  // playwright gives every launch a fresh, temporary user-data-dir.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/**
 * A new page in its own browser context, recording page errors, console errors and dialogs
 * (dialogs are dismissed so that nothing blocks).
 */
async function openPage(browser, url, options = {}) {
  const context = await browser.newContext({ viewport: options.viewport || { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.errors = [];
  page.consoleErrors = [];
  page.dialogs = [];
  page.on('pageerror', (err) => page.errors.push(String(err)));
  page.on('console', (msg) => { if (msg.type() === 'error') page.consoleErrors.push(msg.text()); });
  page.on('dialog', (dialog) => { page.dialogs.push(dialog.message()); dialog.dismiss().catch(() => {}); });
  if (options.before) await options.before(page);
  if (url) await page.goto(url);
  return page;
}

/** Errors that a healthy page never shows: script errors and Content-Security-Policy violations. */
function pageProblems(page) {
  return [...page.errors, ...page.consoleErrors.filter((t) => /Content Security Policy|Refused to/i.test(t))];
}

async function waitConnected(page) {
  await page.waitForSelector('#connection[data-state="connected"]');
}

/** Join the chat through the form and wait for the server's acknowledgement. */
async function join(page, name) {
  await waitConnected(page);
  await page.getByLabel('Nickname').fill(name);
  await page.getByLabel('Nickname').press('Enter');
  await page.waitForFunction((n) => document.getElementById('join-status').textContent === 'You are chatting as ' + n + '.', name);
}

/** Type a message, press Enter, and wait until the server confirmed it. */
async function say(page, text) {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByLabel('Message', { exact: true }).press('Enter');
  await page.waitForFunction((t) => [...document.querySelectorAll('#messages .message.own')]
    .some((li) => li.dataset.state === 'sent' && li.querySelector('.text').textContent === t), text);
}

/** Wait until a message from `name` with `text` is shown. */
async function waitForMessage(page, name, text) {
  await page.waitForFunction(([n, t]) => [...document.querySelectorAll('#messages .message')]
    .some((li) => li.querySelector('.name').textContent === n && li.querySelector('.text').textContent === t), [name, text]);
}

/** The chat as shown: [{name, text, own, state}], in order. */
function shownMessages(page) {
  return page.$$eval('#messages .message', (items) => items.map((li) => ({
    name: li.querySelector('.name').textContent,
    text: li.querySelector('.text').textContent,
    own: li.classList.contains('own'),
    state: li.dataset.state || null,
  })));
}

/**
 * A TCP proxy on a free loopback port forwarding each new connection to the port it points at
 * (as a Kubernetes Service does); `point(port)` re-points it, `point(null)` refuses new
 * connections, `dropAll()` cuts every open one (a network drop).
 */
async function startProxy(target) {
  let current = target;
  const open = new Set();
  const srv = net.createServer((client) => {
    if (current === null) { client.destroy(); return; }
    const upstream = net.connect(current, '127.0.0.1');
    const pair = [client, upstream];
    open.add(pair);
    const done = () => { client.destroy(); upstream.destroy(); open.delete(pair); };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  return {
    port,
    url: 'http://127.0.0.1:' + port,
    point(p) { current = p; },
    dropAll() { for (const [a, b] of open) { a.destroy(); b.destroy(); } open.clear(); },
    close() { this.dropAll(); return new Promise((r) => srv.close(r)); },
  };
}

/** A private redis-server on a free loopback port, its own data directory, no persistence. */
async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'hubbub-redis-'));
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis-server did not start:\n' + output)), TIMEOUT);
    proc.on('error', (err) => { clearTimeout(timer); reject(new Error('redis-server could not run (' + err.message + '): apt-get install redis-server')); });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error('redis-server exited with ' + code + ':\n' + output)); });
    proc.stdout.on('data', (c) => {
      output += c;
      if (output.includes('Ready to accept connections')) { clearTimeout(timer); resolve(); }
    });
  });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  return {
    url: 'redis://127.0.0.1:' + port + '/0',
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A static file server on a free port (for pages from another origin). */
async function staticServer(files, port) {
  port = port || await freePort();
  const srv = http.createServer((req, res) => {
    const file = files[req.url.split('?')[0]];
    if (!file) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': file.type || 'text/html; charset=utf-8' });
    res.end(typeof file.body === 'function' ? file.body() : file.body);
  });
  await new Promise((resolve) => srv.listen(port, '127.0.0.1', resolve));
  return { port, url: 'http://127.0.0.1:' + port, close: () => new Promise((r) => srv.close(r)) };
}

module.exports = {
  ROOT, TIMEOUT, HubbubServer, freePort, httpGet, launchBrowser, openPage, pageProblems,
  waitConnected, join, say, waitForMessage, shownMessages, staticServer, startProxy, startRedis,
};
