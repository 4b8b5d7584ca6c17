// /socket.io/socket.io.js as other pages use it: the tutorial's snippet on a page from another
// origin, the fallback to long-polling when WebSocket cannot be opened, binary arguments and
// acknowledgements over both transports.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
let browser;
let site;

test.before(async () => {
  // The tutorial page lives on another origin, which hubbub must allow (CORS for polling).
  const port = await h.freePort();
  server = await new h.HubbubServer(['--cors-origins', 'http://127.0.0.1:' + port]).start();
  site = await h.staticServer({ '/tutorial.html': { body: () => tutorialPage(server.url) } }, port);
  browser = await h.launchBrowser();
});

test.after(async () => {
  if (browser) await browser.close();
  if (site) await site.close();
  if (server) await server.stop();
});

// The classic tutorial's client code, as written there (global io, io.connect, no acks).
function tutorialPage(hub) {
  return `<!doctype html>
<html><head><title>tutorial</title>
<script src="${hub}/socket.io/socket.io.js"></script>
</head><body>
<ul id="log"></ul>
<input id="text"><button id="send">send</button>
<script>
  var nickname = 'tutor';
  var socket = io.connect('${hub}', location.search === '?polling' ? { transports: ['polling'] } : {});
  socket.on('messages', function (data) {
    var li = document.createElement('li');
    li.textContent = data.hello ? 'hello: ' + data.hello : data.name + ': ' + data.text;
    document.getElementById('log').appendChild(li);
  });
  socket.emit('join', nickname);
  document.getElementById('send').onclick = function () {
    socket.emit('messages', document.getElementById('text').value);
  };
</script>
</body></html>`;
}

test("the tutorial's client snippet works against hubbub from another origin", async () => {
  const tutorial = await h.openPage(browser, site.url + '/tutorial.html');
  await tutorial.waitForFunction(() => [...document.querySelectorAll('#log li')]
    .some((li) => li.textContent.startsWith('hello: ')));

  const alice = await h.openPage(browser, server.url);
  await h.join(alice, 'alice');
  // The tutorial emitted `join` right after io.connect(), before the connection was up:
  // the client buffered it, so alice sees tutor online.
  await alice.waitForFunction(() => Number(document.getElementById('online-count').textContent) === 2);

  await h.say(alice, 'hello from the new page');
  await tutorial.waitForFunction(() => [...document.querySelectorAll('#log li')]
    .some((li) => li.textContent === 'alice: hello from the new page'));

  await tutorial.fill('#text', 'hello from the tutorial');
  await tutorial.click('#send');
  await h.waitForMessage(alice, 'tutor', 'hello from the tutorial');
  assert.deepEqual(tutorial.errors, []);
  await tutorial.context().close();
  await alice.context().close();
});

test('a page from another origin can use long-polling (CORS)', async () => {
  const tutorial = await h.openPage(browser, site.url + '/tutorial.html?polling');
  await tutorial.waitForFunction(() => [...document.querySelectorAll('#log li')]
    .some((li) => li.textContent.startsWith('hello: ')));
  assert.equal(await tutorial.evaluate(() => socket.io.engine.transport.name), 'polling');
  const alice = await h.openPage(browser, server.url);
  await h.join(alice, 'alice2');
  await tutorial.fill('#text', 'polled across origins');
  await tutorial.click('#send');
  await h.waitForMessage(alice, 'tutor', 'polled across origins');
  assert.deepEqual(tutorial.errors, []);
  await tutorial.context().close();
  await alice.context().close();
});

test('the page falls back to long-polling when WebSocket cannot be opened', async () => {
  // Every WebSocket to hubbub is refused (as by a proxy that does not pass upgrades).
  const blockWebSocket = async (page) => {
    await page.routeWebSocket(/\/socket\.io\//, (ws) => ws.close({ code: 1011, reason: 'blocked' }));
  };
  const polled = [];
  const pollingPage = await h.openPage(browser, null, {
    before: async (page) => {
      await blockWebSocket(page);
      page.on('request', (req) => { if (req.url().includes('transport=polling')) polled.push(req.method()); });
    },
  });
  await pollingPage.goto(server.url);
  const wsPage = await h.openPage(browser, server.url);
  await h.join(pollingPage, 'poller');
  await h.join(wsPage, 'socketeer');
  assert.ok(polled.includes('GET') && polled.includes('POST'), 'the page talked over long-polling');

  await h.say(pollingPage, 'sent over polling');
  await h.waitForMessage(wsPage, 'poller', 'sent over polling');
  await h.say(wsPage, 'received over polling');
  await h.waitForMessage(pollingPage, 'socketeer', 'received over polling');
  assert.deepEqual(h.pageProblems(pollingPage), []);
  await pollingPage.context().close();
  await wsPage.context().close();
});

// Runs in the page: two raw sockets with the given transports; the sender emits binary
// arguments with sendToAll, the receiver gets them as ArrayBuffers; acks come back from `who`.
async function binaryRoundTrip(page, senderTransports, receiverTransports) {
  return page.evaluate(async ([st, rt]) => {
    const connect = (transports) => new Promise((resolve, reject) => {
      const s = io({ forceNew: true, transports, auth: { token: 'test' } });
      s.once('connect', () => resolve(s));
      s.once('connect_error', reject);
    });
    const sender = await connect(st);
    const receiver = await connect(rt);
    const got = new Promise((resolve) => receiver.on('messages', (...args) => {
      if (args[0] && args[0].hello) return;
      resolve(args);
    }));
    const bytes = new Uint8Array(300);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 0xff;
    sender.emit('sendToAll', 'file', bytes, { nested: new Uint8Array([0, 255, 1]).buffer, n: 1 });
    const args = await got;
    const who = await new Promise((resolve) => receiver.emit('who', resolve));
    const result = {
      label: args[0],
      first: args[1] instanceof ArrayBuffer ? [...new Uint8Array(args[1])] : String(args[1]),
      nested: args[2].nested instanceof ArrayBuffer ? [...new Uint8Array(args[2].nested)] : String(args[2].nested),
      n: args[2].n,
      expected: [...bytes],
      whoHasOnline: typeof who.online === 'number',
      transports: [sender.io.engine.transport.name, receiver.io.engine.transport.name],
      ids: typeof sender.id === 'string' && sender.id !== receiver.id,
    };
    sender.disconnect();
    receiver.disconnect();
    result.connectedAfterDisconnect = sender.connected || receiver.connected;
    return result;
  }, [senderTransports, receiverTransports]);
}

for (const [st, rt] of [[['websocket'], ['websocket']], [['polling'], ['polling']], [['polling'], ['websocket']]]) {
  test(`binary arguments and acks: ${st} -> ${rt}`, async () => {
    const page = await h.openPage(browser, server.url);
    const r = await binaryRoundTrip(page, st, rt);
    assert.equal(r.label, 'file');
    assert.deepEqual(r.first, r.expected);
    assert.deepEqual(r.nested, [0, 255, 1]);
    assert.equal(r.n, 1);
    assert.equal(r.whoHasOnline, true);
    assert.deepEqual(r.transports, [st[0], rt[0]]);
    assert.equal(r.ids, true);
    assert.equal(r.connectedAfterDisconnect, false);
    await page.context().close();
  });
}
