// hubbub's browser client against the reference server (npm `socket.io` 4.x) in Chromium:
// proves the client speaks the same protocol as the official implementation, over WebSocket
// and long-polling: auth, namespaces over one connection, acks both ways, binary both ways,
// connect errors from middleware, heartbeats, server-side disconnects and reconnection.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { EventEmitter, once } = require('node:events');
const { Server } = require('socket.io');
const h = require('./helpers');

const CLIENT = fs.readFileSync(path.join(h.ROOT, 'crates', 'server', 'web', 'socket.io.js'));

let browser;
let httpServer;
let ioServer;
let base;
const seen = { auth: [], transports: [] };
const pongs = new EventEmitter();

test.before(async () => {
  httpServer = http.createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>interop</title><script src="/hubbub-client.js"></script>');
    } else if (req.url === '/hubbub-client.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      res.end(CLIENT);
    }
  });
  ioServer = new Server(httpServer, { serveClient: false, pingInterval: 300, pingTimeout: 1000 });
  ioServer.use((socket, next) => {
    seen.auth.push(socket.handshake.auth);
    if (socket.handshake.auth.token === 'wrong') {
      const err = new Error('not authorized');
      err.data = { hint: 'use the right token' };
      next(err);
      return;
    }
    next();
  });
  ioServer.on('connection', (socket) => {
    seen.transports.push(socket.conn.transport.name);
    // engine.io waits up to 30 s for a last GET to deliver its close packet to a polling client
    // that it disconnects; a client that got the DISCONNECT does not poll again. Keep the wait short.
    socket.conn.transport.closeTimeout = 500;
    socket.conn.on('packet', (p) => { if (p.type === 'pong') pongs.emit('pong'); });
    socket.emit('welcome', { id: socket.id });
    socket.on('echo', (...args) => {
      const ack = typeof args[args.length - 1] === 'function' ? args.pop() : null;
      if (ack) ack(...args);
    });
    socket.on('ask-me', async () => {
      const reply = await socket.emitWithAck('question', 'size?', new Uint8Array([5, 6, 7]));
      socket.emit('asked', reply);
    });
    socket.on('kick', () => socket.disconnect(true));
    socket.on('drop-transport', () => socket.conn.close());
  });
  ioServer.of('/admin').on('connection', (socket) => {
    socket.emit('admin-hello', socket.nsp.name, socket.conn.id);
  });
  await new Promise((r) => httpServer.listen(0, '127.0.0.1', r));
  base = 'http://127.0.0.1:' + httpServer.address().port;
  browser = await h.launchBrowser();
});

test.after(async () => {
  if (browser) await browser.close();
  if (ioServer) {
    const closed = new Promise((r) => ioServer.close(r));
    httpServer.closeAllConnections(); // idle keep-alive connections would hold close() open
    await closed;
  }
});

async function connected(page, transports) {
  await page.evaluate((t) => new Promise((resolve, reject) => {
    window.socket = io({ transports: t, auth: { token: 'ok' }, reconnectionDelay: 100, reconnectionDelayMax: 300 });
    window.log = [];
    socket.on('disconnect', (reason) => log.push('disconnect:' + reason));
    socket.on('connect', () => log.push('connect'));
    socket.on('welcome', (w) => { window.welcome = w; });
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  }), transports);
}

for (const transport of ['websocket', 'polling']) {
  test(`${transport}: auth, acks and binary both ways`, async () => {
    const page = await h.openPage(browser, base + '/');
    await connected(page, [transport]);
    await page.waitForFunction(() => window.welcome);
    assert.equal(await page.evaluate(() => window.welcome.id === socket.id), true);
    assert.deepEqual(seen.auth[seen.auth.length - 1], { token: 'ok' });
    assert.equal(seen.transports[seen.transports.length - 1], transport);

    const echoed = await page.evaluate(() => new Promise((resolve) => {
      const bytes = new Uint8Array([1, 2, 3, 250]);
      socket.emit('echo', 'text', 42, { deep: [bytes, null] }, bytes.buffer, (...args) => resolve({
        text: args[0],
        n: args[1],
        deep: [...new Uint8Array(args[2].deep[0])],
        nul: args[2].deep[1],
        raw: [...new Uint8Array(args[3])],
        types: [args[2].deep[0] instanceof ArrayBuffer, args[3] instanceof ArrayBuffer],
      }));
    }));
    assert.deepEqual(echoed, { text: 'text', n: 42, deep: [1, 2, 3, 250], nul: null, raw: [1, 2, 3, 250], types: [true, true] });

    // The server asks with emitWithAck (binary argument), the client acknowledges.
    const asked = await page.evaluate(() => new Promise((resolve) => {
      socket.on('question', (q, data, ack) => ack({ q, size: data.byteLength }));
      socket.on('asked', resolve);
      socket.emit('ask-me');
    }));
    assert.deepEqual(asked, { q: 'size?', size: 3 });

    // Acks through timeout(): answered in time -> (null, value).
    const timed = await page.evaluate(() => new Promise((resolve) => {
      socket.timeout(5000).emit('echo', 'quick', (err, value) => resolve([err, value]));
    }));
    assert.deepEqual(timed, [null, 'quick']);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test(`${transport}: heartbeats are answered, the connection stays up`, async () => {
    const page = await h.openPage(browser, base + '/');
    await connected(page, [transport]);
    // pingInterval is 300 ms and pingTimeout 1 s: three pongs in a row keep the session alive.
    for (let i = 0; i < 3; i++) await once(pongs, 'pong');
    assert.equal(await page.evaluate(() => socket.connected && log.join()), 'connect');
    await page.context().close();
  });
}

test('namespaces share one connection', async () => {
  const page = await h.openPage(browser, base + '/');
  await connected(page, ['websocket']);
  const result = await page.evaluate(() => new Promise((resolve) => {
    const admin = io('/admin');
    admin.on('admin-hello', (nsp, engineId) => resolve({
      nsp, sameManager: admin.io === socket.io, sameEngine: engineId === socket.io.engine.sid,
    }));
  }));
  assert.deepEqual(result, { nsp: '/admin', sameManager: true, sameEngine: true });
  await page.context().close();
});

test('a middleware error arrives as connect_error with message and data', async () => {
  const page = await h.openPage(browser, base + '/');
  const err = await page.evaluate(() => new Promise((resolve) => {
    const s = io({ forceNew: true, auth: { token: 'wrong' } });
    s.on('connect_error', (e) => resolve({ message: e.message, data: e.data, active: s.active }));
  }));
  assert.deepEqual(err, { message: 'not authorized', data: { hint: 'use the right token' }, active: false });
  await page.context().close();
});

test('auth may be a function called on every connection', async () => {
  const page = await h.openPage(browser, base + '/');
  await page.evaluate(() => new Promise((resolve) => {
    let n = 0;
    const s = io({ forceNew: true, auth: (cb) => cb({ token: 'ok', n: ++n }) });
    s.on('connect', resolve);
  }));
  assert.deepEqual(seen.auth[seen.auth.length - 1], { token: 'ok', n: 1 });
  await page.context().close();
});

for (const transport of ['websocket', 'polling']) {
  test(`${transport}: a dropped transport reconnects by itself; a server disconnect does not`, async () => {
    const page = await h.openPage(browser, base + '/');
    await connected(page, [transport]);
    const firstId = await page.evaluate(() => socket.id);
    await page.evaluate(() => socket.emit('drop-transport'));
    await page.waitForFunction(() => log.join() === 'connect,disconnect:transport close,connect');
    const secondId = await page.evaluate(() => socket.id);
    assert.notEqual(secondId, firstId);

    await page.evaluate(() => socket.emit('kick'));
    await page.waitForFunction(() => log[log.length - 1] === 'disconnect:io server disconnect');
    assert.equal(await page.evaluate(() => socket.connected || socket.active), false);
    // ...until the page asks for it.
    await page.evaluate(() => socket.connect());
    await page.waitForFunction(() => socket.connected);
    await page.evaluate(() => socket.disconnect());
    assert.equal(await page.evaluate(() => log[log.length - 1]), 'disconnect:io client disconnect');
    await page.context().close();
  });
}

test('after falling back to polling, reconnections skip the blocked WebSocket', async () => {
  let wsAttempts = 0;
  const page = await h.openPage(browser, null, {
    before: (p) => p.routeWebSocket(/\/socket\.io\//, (ws) => { wsAttempts++; ws.close({ code: 1011 }); }),
  });
  await page.goto(base + '/');
  await connected(page, ['websocket', 'polling']);
  assert.equal(await page.evaluate(() => socket.io.engine.transport.name), 'polling');
  assert.equal(seen.transports[seen.transports.length - 1], 'polling');
  assert.equal(wsAttempts, 1);
  await page.evaluate(() => socket.emit('drop-transport'));
  await page.waitForFunction(() => log.join() === 'connect,disconnect:transport close,connect');
  assert.equal(await page.evaluate(() => socket.io.engine.transport.name), 'polling');
  assert.equal(wsAttempts, 1, 'no second WebSocket attempt');
  await page.context().close();
});
