// hubbub's browser client on the wire: a scripted Engine.IO v4 long-polling server in this test
// checks the exact packets the client sends (CONNECT with auth, pong, binary attachments as
// 'b'+base64, acks) and feeds it packets (binary events, server acks, DISCONNECT), in Chromium.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const h = require('./helpers');

const CLIENT = fs.readFileSync(path.join(h.ROOT, 'crates', 'server', 'web', 'socket.io.js'));

/**
 * A long-polling Engine.IO server with one session at a time, driven by the test:
 * `push(packet)` queues packets for the client, `next()` resolves with the next packet the
 * client POSTs. Handshakes are counted so that reconnection can be observed.
 */
class FakeEngine {
  constructor() {
    this.outbox = [];
    this.waitingGet = null;
    this.inbox = [];
    this.inboxWaiters = [];
    this.handshakes = 0;
    this.sid = null;
    this.server = http.createServer((req, res) => this.handle(req, res));
  }
  async listen() {
    this.port = await h.freePort();
    await new Promise((r) => this.server.listen(this.port, '127.0.0.1', r));
    this.url = 'http://127.0.0.1:' + this.port;
  }
  close() {
    if (this.waitingGet) this.waitingGet.end('6');
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(r));
  }
  handle(req, res) {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>fake</title><script src="/socket.io/socket.io.js"></script>');
      return;
    }
    if (url.pathname === '/socket.io/socket.io.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      res.end(CLIENT);
      return;
    }
    if (url.pathname !== '/socket.io/' || url.searchParams.get('EIO') !== '4') {
      res.writeHead(400); res.end(); return;
    }
    if (url.searchParams.get('transport') !== 'polling') { res.writeHead(400); res.end(); return; }
    const sid = url.searchParams.get('sid');
    if (!sid) {
      this.handshakes++;
      this.sid = 'fake' + this.handshakes;
      this.outbox = [];
      res.writeHead(200, { 'content-type': 'text/plain; charset=UTF-8' });
      res.end('0' + JSON.stringify({ sid: this.sid, upgrades: [], pingInterval: 60000, pingTimeout: 60000, maxPayload: 1e6 }));
      return;
    }
    if (sid !== this.sid) { res.writeHead(400); res.end('{"code":1,"message":"Session ID unknown"}'); return; }
    if (req.method === 'GET') {
      this.waitingGet = res;
      this.flush();
      return;
    }
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('ok');
      this.inbox.push(...body.split('\x1e'));
      while (this.inboxWaiters.length && this.inbox.length) this.inboxWaiters.shift()(this.inbox.shift());
    });
  }
  push(...packets) {
    this.outbox.push(...packets);
    this.flush();
  }
  flush() {
    if (!this.waitingGet || this.outbox.length === 0) return;
    const res = this.waitingGet;
    this.waitingGet = null;
    res.writeHead(200, { 'content-type': 'text/plain; charset=UTF-8' });
    res.end(this.outbox.splice(0).join('\x1e'));
  }
  /** Ends the session as a restarted server would: the pending GET fails, the sid is unknown. */
  dropSession() {
    this.sid = null;
    if (this.waitingGet) { this.waitingGet.writeHead(400); this.waitingGet.end(); this.waitingGet = null; }
  }
  next() {
    if (this.inbox.length) return Promise.resolve(this.inbox.shift());
    return new Promise((resolve) => this.inboxWaiters.push(resolve));
  }
}

let browser;
let fake;
let page;

test.before(async () => {
  browser = await h.launchBrowser();
  fake = new FakeEngine();
  await fake.listen();
  page = await h.openPage(browser, fake.url + '/');
  await page.evaluate(() => {
    window.events = [];
    window.socket = io({
      transports: ['polling'], auth: { token: 'secret' },
      reconnectionDelay: 50, reconnectionDelayMax: 200,
    });
    for (const ev of ['connect', 'disconnect', 'connect_error']) {
      socket.on(ev, (arg) => events.push([ev, arg instanceof Error ? arg.message : arg === undefined ? null : arg]));
    }
    socket.io.on('reconnect_attempt', (n) => events.push(['reconnect_attempt', n]));
    socket.io.on('reconnect', (n) => events.push(['reconnect', n]));
  });
});

test.after(async () => {
  if (browser) await browser.close();
  if (fake) await fake.close();
});

test('CONNECT carries the auth payload; the CONNECT reply sets id and connected', async () => {
  assert.equal(await fake.next(), '40{"token":"secret"}');
  fake.push('40{"sid":"abc123"}');
  await page.waitForFunction(() => socket.connected);
  assert.equal(await page.evaluate(() => socket.id), 'abc123');
  assert.deepEqual(await page.evaluate(() => events), [['connect', null]]);
});

test('a ping is answered with a pong', async () => {
  fake.push('2');
  assert.equal(await fake.next(), '3');
});

test('events: plain, with ack, and with binary attachments as b+base64', async () => {
  await page.evaluate(() => socket.emit('chat', 'hi', { n: 1 }));
  assert.equal(await fake.next(), '42["chat","hi",{"n":1}]');

  await page.evaluate(() => {
    socket.emit('who', (res) => { window.ackResult = res; });
  });
  assert.equal(await fake.next(), '420["who"]');
  fake.push('430[{"online":3}]');
  await page.waitForFunction(() => window.ackResult);
  assert.deepEqual(await page.evaluate(() => window.ackResult), { online: 3 });

  await page.evaluate(() => {
    socket.emit('upload', new Uint8Array([1, 2, 3]), { inner: new Uint8Array([255]).buffer }, (ok) => { window.binaryAck = ok; });
  });
  assert.equal(await fake.next(), '452-1["upload",{"_placeholder":true,"num":0},{"inner":{"_placeholder":true,"num":1}}]');
  assert.equal(await fake.next(), 'bAQID');
  assert.equal(await fake.next(), 'b/w==');
  fake.push('431[true]');
  await page.waitForFunction(() => window.binaryAck === true);
});

test('incoming binary events become ArrayBuffers; the server may ask for an ack', async () => {
  await page.evaluate(() => {
    socket.on('file', (name, data, ack) => {
      window.file = { name, bytes: [...new Uint8Array(data)], isBuffer: data instanceof ArrayBuffer };
      ack('thanks', new Uint8Array([9]));
    });
  });
  fake.push('451-7["file","a.bin",{"_placeholder":true,"num":0}]', 'bAAEC/w==');
  await page.waitForFunction(() => window.file);
  assert.deepEqual(await page.evaluate(() => window.file), { name: 'a.bin', bytes: [0, 1, 2, 255], isBuffer: true });
  assert.equal(await fake.next(), '461-7["thanks",{"_placeholder":true,"num":0}]');
  assert.equal(await fake.next(), 'bCQ==');
});

test('once, off and onAny', async () => {
  await page.evaluate(() => {
    window.counts = { once: 0, on: 0, any: [] };
    const onHandler = () => { counts.on++; };
    socket.once('tick', () => { counts.once++; });
    socket.on('tick', onHandler);
    socket.onAny((ev) => counts.any.push(ev));
    window.removeTick = () => socket.off('tick', onHandler);
  });
  fake.push('42["tick"]', '42["tick"]');
  await page.waitForFunction(() => counts.on === 2);
  await page.evaluate(() => removeTick());
  fake.push('42["tick"]', '42["done"]');
  await page.waitForFunction(() => counts.any.includes('done'));
  assert.deepEqual(await page.evaluate(() => counts), { once: 1, on: 2, any: ['tick', 'tick', 'tick', 'done'] });
});

test('emits while disconnected are buffered; a lost session reconnects with back-off', async () => {
  fake.dropSession();
  await page.waitForFunction(() => events.some((e) => e[0] === 'disconnect'));
  await page.evaluate(() => socket.emit('later', 1));
  // The client opens a new session and sends CONNECT (with auth) again, then the buffered event.
  assert.equal(await fake.next(), '40{"token":"secret"}');
  fake.push('40{"sid":"second"}');
  assert.equal(await fake.next(), '42["later",1]');
  await page.waitForFunction(() => socket.id === 'second');
  const events = await page.evaluate(() => window.events);
  assert.deepEqual(events[1], ['disconnect', 'transport error']);
  assert.deepEqual(events.slice(-3), [['reconnect_attempt', 1], ['reconnect', 1], ['connect', null]]);
});

test('back-off delays grow exponentially with jitter and stay under the cap', async () => {
  const samples = await page.evaluate(() => {
    const m = new io.Manager({ secure: false, host: 'unused', nsp: '/' },
      { reconnectionDelay: 1000, reconnectionDelayMax: 5000, randomizationFactor: 0.5 });
    const out = {};
    for (const attempts of [0, 1, 2, 5]) {
      m.attempts = attempts;
      out[attempts] = Array.from({ length: 200 }, () => m._backoff());
    }
    return out;
  });
  const range = (xs) => [Math.min(...xs), Math.max(...xs)];
  const [min0, max0] = range(samples[0]);
  assert.ok(min0 >= 500 && max0 <= 1500 && max0 - min0 > 300, `attempt 0: ${min0}..${max0}`);
  const [min1, max1] = range(samples[1]);
  assert.ok(min1 >= 1000 && max1 <= 3000 && max1 - min1 > 600, `attempt 1: ${min1}..${max1}`);
  const [min2, max2] = range(samples[2]);
  assert.ok(min2 >= 2000 && max2 <= 5000, `attempt 2: ${min2}..${max2}`);
  assert.ok(samples[5].every((ms) => ms === 5000), 'capped at reconnectionDelayMax');
});

test('a DISCONNECT from the server ends the socket without reconnecting', async () => {
  fake.push('41');
  await page.waitForFunction(() => !socket.connected);
  assert.deepEqual(await page.evaluate(() => events[events.length - 1]), ['disconnect', 'io server disconnect']);
  assert.equal(await page.evaluate(() => socket.io.skipReconnect), true);
  // The client also ends the Engine.IO session with a close packet.
  assert.equal(await fake.next(), '1');
  assert.deepEqual(page.errors, []);
});

test('connection state recovery: pid and offset sent back, offsets taken off, missed events before the CONNECT reply', async () => {
  await page.evaluate(() => {
    window.rec = { got: [], connects: [] };
    window.rs = io({
      transports: ['polling'], forceNew: true, auth: { token: 't' },
      reconnectionDelay: 50, reconnectionDelayMax: 200,
    });
    rs.on('connect', () => rec.connects.push([rs.id, rs.recovered]));
    rs.on('news', (...args) => rec.got.push(args));
    rs.on('ask', (text, ack) => { rec.asked = text; ack('ok'); });
  });
  assert.equal(await fake.next(), '40{"token":"t"}');
  fake.push('40{"sid":"s1","pid":"p1"}');
  await page.waitForFunction(() => rec.connects.length === 1);
  // Events end with their offset, taken off for the handlers; an event with an ack carries
  // none, so its trailing string is the application's.
  fake.push('42["news","a","7-1"]', '42["news",{"b":2},"7-2"]', '427["ask","not an offset"]');
  assert.equal(await fake.next(), '437["ok"]');
  assert.deepEqual(await page.evaluate(() => rec), {
    got: [['a'], [{ b: 2 }]], connects: [['s1', false]], asked: 'not an offset',
  });

  // Reconnection: pid and the last offset go first, the auth after; the server replays what was
  // missed before its CONNECT reply, and the handlers get it before 'connect'.
  fake.dropSession();
  assert.equal(await fake.next(), '40{"pid":"p1","offset":"7-2","token":"t"}');
  fake.push('42["news","c","7-3"]', '40{"sid":"s1","pid":"p1"}');
  await page.waitForFunction(() => rec.connects.length === 2);
  assert.deepEqual(await page.evaluate(() => [rec.got, rec.connects]), [
    [['a'], [{ b: 2 }], ['c']],
    [['s1', false], ['s1', true]],
  ]);

  // A session the server could not restore: a new pid, recovered false.
  fake.dropSession();
  assert.equal(await fake.next(), '40{"pid":"p1","offset":"7-3","token":"t"}');
  fake.push('40{"sid":"s2","pid":"p2"}');
  await page.waitForFunction(() => rec.connects.length === 3);
  assert.deepEqual(await page.evaluate(() => rec.connects[2]), ['s2', false]);
  await page.evaluate(() => rs.disconnect());
});
