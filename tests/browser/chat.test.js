// The chat page in real Chromium against hubbub-server: two pages chat, history for late
// joiners, safe rendering of hostile strings, security headers, keyboard and phone use.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
let browser;

test.before(async () => {
  server = await new h.HubbubServer().start();
  browser = await h.launchBrowser();
});

test.after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

test('the page and the client are served with a CSP and the right content types', async () => {
  const page = await h.httpGet(server.url + '/');
  assert.equal(page.status, 200);
  assert.match(page.headers['content-type'], /^text\/html/);
  const csp = page.headers['content-security-policy'] || '';
  assert.match(csp, /script-src 'self'/, 'CSP must forbid inline script');
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.doesNotMatch(page.body, /<script>|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handlers');

  const client = await h.httpGet(server.url + '/socket.io/socket.io.js');
  assert.equal(client.status, 200);
  assert.match(client.headers['content-type'], /^application\/javascript/);
  assert.match(client.headers['cache-control'] || '', /max-age=\d+/);
  assert.match(client.body, /Engine\.IO v4/);

  for (const [file, type] of [['/app.js', /^application\/javascript/], ['/style.css', /^text\/css/]]) {
    const res = await h.httpGet(server.url + file);
    assert.equal(res.status, 200, file);
    assert.match(res.headers['content-type'], type, file);
  }
});

test('two pages chat with each other', async () => {
  const alice = await h.openPage(browser, server.url);
  const bob = await h.openPage(browser, server.url);
  await h.join(alice, 'alice');
  await h.join(bob, 'bob');

  // alice is told that bob joined, with the online count.
  await alice.waitForFunction(() => [...document.querySelectorAll('#messages .system')]
    .some((li) => li.textContent === 'bob joined'));
  await alice.waitForFunction(() => Number(document.getElementById('online-count').textContent) >= 2);

  await h.say(alice, 'Hi Bob, how are you?');
  await h.waitForMessage(bob, 'alice', 'Hi Bob, how are you?');
  await h.say(bob, 'Fine, thanks!');
  await h.waitForMessage(alice, 'bob', 'Fine, thanks!');

  // The sender shows its own message once (from the ack), never echoed back.
  const shown = await h.shownMessages(alice);
  assert.deepEqual(shown.filter((m) => m.text === 'Hi Bob, how are you?'),
    [{ name: 'alice', text: 'Hi Bob, how are you?', own: true, state: 'sent' }]);
  assert.deepEqual(shown.filter((m) => m.text === 'Fine, thanks!'),
    [{ name: 'bob', text: 'Fine, thanks!', own: false, state: null }]);

  // bob leaves: alice sees it.
  await bob.context().close();
  await alice.waitForFunction(() => [...document.querySelectorAll('#messages .system')]
    .some((li) => li.textContent === 'bob left'));
  assert.deepEqual(h.pageProblems(alice), []);
  await alice.context().close();
});

test('a page opened later shows the last 10 messages, oldest first', async () => {
  const writer = await h.openPage(browser, server.url);
  await h.join(writer, 'writer');
  const sent = [];
  for (let i = 1; i <= 12; i++) {
    sent.push('history message ' + i);
    await h.say(writer, sent[sent.length - 1]);
  }
  const late = await h.openPage(browser, server.url);
  await h.join(late, 'latecomer');
  await late.waitForFunction(() => document.querySelectorAll('#messages .message').length >= 10);
  // The replay is complete once the last message is there; nothing else arrives after it.
  await h.waitForMessage(late, 'writer', 'history message 12');
  const shown = await h.shownMessages(late);
  assert.deepEqual(shown.map((m) => m.text), sent.slice(2));
  assert.ok(shown.every((m) => m.name === 'writer' && !m.own));
  assert.deepEqual(h.pageProblems(late), []);
  await writer.context().close();
  await late.context().close();
});

test('hostile strings are shown literally and run nothing', async () => {
  const payload = '<img src=x onerror=alert(1)>';
  const evil = await h.openPage(browser, server.url);
  const victim = await h.openPage(browser, server.url);
  await h.join(victim, 'victim');
  await h.join(evil, payload); // 28 characters: a valid nickname
  await victim.waitForFunction((p) => [...document.querySelectorAll('#messages .system')]
    .some((li) => li.textContent === p + ' joined'), payload);

  await h.say(evil, payload);
  await h.waitForMessage(victim, payload, payload);
  await evil.getByLabel(/Your question/).fill(payload + ' <script>alert(2)</script>');
  await evil.getByLabel(/Your question/).press('Enter');
  await victim.waitForFunction((p) => [...document.querySelectorAll('.question-text')]
    .some((q) => q.textContent === p), payload + ' <script>alert(2)</script>');
  const answerBox = victim.getByLabel('Your answer to: ' + payload + ' <script>alert(2)</script>');
  await answerBox.fill('<svg onload=alert(3)>');
  await answerBox.press('Enter');
  await evil.waitForFunction(() => [...document.querySelectorAll('.answer')]
    .some((a) => a.textContent === '<svg onload=alert(3)>'));

  for (const page of [evil, victim]) {
    const counts = await page.evaluate(() => ({
      img: document.querySelectorAll('img').length,
      svg: document.querySelectorAll('svg').length,
      script: document.querySelectorAll('script').length,
    }));
    assert.deepEqual(counts, { img: 0, svg: 0, script: 2 }, 'only the page\'s own two scripts');
    assert.deepEqual(page.dialogs, [], 'no dialog may fire');
    assert.deepEqual(h.pageProblems(page), []);
  }
  await evil.context().close();
  await victim.context().close();
});

test('usable by keyboard alone, with labelled controls', async () => {
  const page = await h.openPage(browser, server.url);
  await h.waitConnected(page);
  for (const label of ['Nickname', 'Message', 'Your question (you may ask one)']) {
    assert.equal(await page.getByLabel(label, { exact: true }).count(), 1, 'control labelled ' + label);
  }
  const focusOrder = [];
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press('Tab');
    focusOrder.push(await page.evaluate(() => document.activeElement.id || document.activeElement.textContent));
  }
  assert.deepEqual(focusOrder, ['Skip to the message box', 'name-input', 'join-button', 'messages', 'message-input',
    'send-button', 'question-input', 'ask-button']);

  // Join and send with the keyboard only.
  await page.keyboard.down('Shift');
  for (let i = 0; i < 6; i++) await page.keyboard.press('Tab');
  await page.keyboard.up('Shift');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'name-input');
  await page.keyboard.type('keyboarder');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('join-status').textContent === 'You are chatting as keyboarder.');
  await page.keyboard.press('Tab'); // join button
  await page.keyboard.press('Tab'); // the message log (scrollable by keyboard)
  await page.keyboard.press('Tab'); // message box
  assert.equal(await page.evaluate(() => document.activeElement.id), 'message-input');
  await page.keyboard.type('typed without a mouse');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('#messages .message.own')]
    .some((li) => li.dataset.state === 'sent' && li.querySelector('.text').textContent === 'typed without a mouse'));
  assert.deepEqual(h.pageProblems(page), []);
  await page.context().close();
});

test('fits a 375px wide phone screen', async () => {
  const page = await h.openPage(browser, server.url, { viewport: { width: 375, height: 740 } });
  await h.join(page, 'phone');
  await h.say(page, 'A long line without spaces: ' + 'x'.repeat(300));
  const layout = await page.evaluate(() => {
    const box = (id) => document.getElementById(id).getBoundingClientRect();
    return {
      scrollWidth: document.documentElement.scrollWidth,
      send: box('send-button').right,
      ask: box('ask-button').right,
      message: box('message-input').width,
    };
  });
  assert.ok(layout.scrollWidth <= 375, 'no horizontal scrolling, got ' + layout.scrollWidth);
  assert.ok(layout.send <= 375 && layout.ask <= 375, 'buttons on screen');
  assert.ok(layout.message >= 150, 'message box wide enough to type in');
  await page.context().close();
});
