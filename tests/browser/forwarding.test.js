// No sticky sessions, in Chromium: three hubbub-server replicas on one private redis-server
// behind a strict per-request round-robin proxy (written here: every HTTP request goes to
// the next replica, no affinity of any kind). A page whose WebSocket is blocked falls back to
// long-polling, so its requests land on all three replicas; the replicas forward them to the
// one holding the session. It chats with a page on WebSocket.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');

let redis;
let redisDir;
let servers = [];
let proxy;
let browser;

/** redis-server on a free loopback port, no persistence, data dir of its own. */
async function startRedis() {
  const port = await h.freePort();
  redisDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubbub-browser-redis-'));
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no', '--dir', redisDir], { stdio: 'ignore' });
  proc.once('error', (e) => { throw new Error('redis-server (apt-get install redis-server): ' + e.message); });
  const deadline = Date.now() + h.TIMEOUT;
  for (;;) {
    const up = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (up) return { proc, url: 'redis://127.0.0.1:' + port + '/0' };
    if (Date.now() > deadline) throw new Error('redis-server did not start on port ' + port);
    await new Promise((r) => setTimeout(r, 50)); // connection refused: try again shortly
  }
}

/** The round-robin proxy: records, per Engine.IO session, which replica got each request. */
async function startProxy(ports) {
  let next = 0;
  const bySid = new Map();
  const pick = (req) => {
    const i = next++ % ports.length;
    const sid = new URL(req.url, 'http://x').searchParams.get('sid');
    if (sid) {
      if (!bySid.has(sid)) bySid.set(sid, []);
      bySid.get(sid).push({ replica: i, method: req.method, upgrade: Boolean(req.headers.upgrade) });
    }
    return ports[i];
  };
  const server = http.createServer((req, res) => {
    const upstream = http.request({
      host: '127.0.0.1', port: pick(req), method: req.method, path: req.url, headers: req.headers,
      agent: false, // a new connection per request: nothing ties a client to a replica
    }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
    req.pipe(upstream);
  });
  server.on('upgrade', (req, socket, head) => {
    const upstream = net.connect(pick(req), '127.0.0.1', () => {
      let raw = req.method + ' ' + req.url + ' HTTP/1.1\r\n';
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += req.rawHeaders[i] + ': ' + req.rawHeaders[i + 1] + '\r\n';
      upstream.write(raw + '\r\n');
      if (head.length) upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: 'http://127.0.0.1:' + server.address().port, bySid, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}

test.before(async () => {
  redis = await startRedis();
  for (let i = 0; i < 3; i++) {
    servers.push(await new h.HubbubServer(['--redis-url', redis.url]).start());
  }
  // /healthz is up before the Redis link: wait for readiness so that every replica has
  // registered where it can be reached.
  for (const s of servers) {
    const deadline = Date.now() + h.TIMEOUT;
    while ((await h.httpGet(s.url + '/readyz')).status !== 200) {
      if (Date.now() > deadline) throw new Error('replica not ready:\n' + s.output);
      await new Promise((r) => setTimeout(r, 50)); // readiness is polled, as Kubernetes does
    }
  }
  proxy = await startProxy(servers.map((s) => s.port));
  browser = await h.launchBrowser();
});

test.after(async () => {
  if (browser) await browser.close();
  if (proxy) await proxy.close();
  for (const s of servers) await s.stop();
  if (redis) redis.proc.kill('SIGKILL');
  if (redisDir) fs.rmSync(redisDir, { recursive: true, force: true });
});

test('a polling-only page behind a round-robin proxy chats with a WebSocket page', async () => {
  const polling = await h.openPage(browser, null, {
    // Every WebSocket is refused, as by a proxy that does not pass upgrades.
    before: (page) => page.routeWebSocket(/\/socket\.io\//, (ws) => ws.close({ code: 1011, reason: 'blocked' })),
  });
  await polling.goto(proxy.url + '/');
  const ws = await h.openPage(browser, proxy.url + '/');
  await h.join(polling, 'paula');
  await h.join(ws, 'walter');

  await h.say(polling, 'hello from polling');
  await h.waitForMessage(ws, 'paula', 'hello from polling');
  await h.say(ws, 'hello from websocket');
  await h.waitForMessage(polling, 'walter', 'hello from websocket');
  for (let i = 0; i < 5; i++) {
    await h.say(polling, 'p' + i);
    await h.say(ws, 'w' + i);
  }
  await h.waitForMessage(ws, 'paula', 'p4');
  await h.waitForMessage(polling, 'walter', 'w4');
  // Each sender's messages shown exactly once and in order, on both pages.
  for (const page of [polling, ws]) {
    const shown = await h.shownMessages(page);
    const of = (name) => shown.filter((m) => m.name === name).map((m) => m.text);
    assert.deepEqual(of('paula'), ['hello from polling', 'p0', 'p1', 'p2', 'p3', 'p4']);
    assert.deepEqual(of('walter'), ['hello from websocket', 'w0', 'w1', 'w2', 'w3', 'w4']);
  }
  assert.equal(await polling.evaluate(() => performance.getEntriesByType('resource')
    .some((e) => e.name.includes('transport=polling'))), true, 'the page polls');

  // The polling page's session really was served by several replicas.
  const polled = [...proxy.bySid.values()].filter((reqs) => reqs.some((r) => !r.upgrade));
  assert.equal(polled.length, 1, 'one polling session');
  const replicas = new Set(polled[0].map((r) => r.replica));
  assert.ok(replicas.size >= 2, 'requests of one session reached ' + replicas.size + ' replica(s)');
  assert.ok(polled[0].some((r) => r.method === 'POST') && polled[0].some((r) => r.method === 'GET'));
  assert.deepEqual(h.pageProblems(polling), []);
  assert.deepEqual(h.pageProblems(ws), []);
});
