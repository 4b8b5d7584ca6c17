// Losing the server: the page shows it, keeps what is typed meanwhile, reconnects by itself
// when the server is back, joins again and sends what was waiting.
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

const connectionState = (page) => page.locator('#connection').getAttribute('data-state');

test('after a server restart the pages reconnect, rejoin and send what was typed offline', async () => {
  const alice = await h.openPage(browser, server.url);
  const bob = await h.openPage(browser, server.url);
  await h.join(alice, 'alice');
  await h.join(bob, 'bob');
  await h.say(alice, 'before the restart');
  await h.waitForMessage(bob, 'alice', 'before the restart');

  await server.stop();
  await alice.waitForSelector('#connection[data-state="reconnecting"]');
  await bob.waitForSelector('#connection[data-state="reconnecting"]');
  assert.match(await alice.locator('#connection-text').textContent(), /^Reconnecting/);

  // Typed while the server is gone: kept and clearly waiting.
  await alice.getByLabel('Message', { exact: true }).fill('typed while offline');
  await alice.getByLabel('Message', { exact: true }).press('Enter');
  const pending = alice.locator('#messages .message.own[data-state="queued"]');
  await pending.waitFor();
  assert.equal(await pending.locator('.text').textContent(), 'typed while offline');
  assert.match(await pending.locator('.delivery').textContent(), /will be sent/);

  await server.start(); // same port
  await alice.waitForSelector('#connection[data-state="connected"]');
  await bob.waitForSelector('#connection[data-state="connected"]');

  // The queued message goes out after alice has joined again; bob (rejoined too) gets it.
  await h.waitForMessage(bob, 'alice', 'typed while offline');
  await alice.waitForFunction(() => [...document.querySelectorAll('#messages .message.own')]
    .some((li) => li.dataset.state === 'sent' && li.querySelector('.text').textContent === 'typed while offline'));

  // Chatting resumes both ways.
  await h.say(bob, 'welcome back');
  await h.waitForMessage(alice, 'bob', 'welcome back');

  // Nothing is shown twice (the new server replays its history on join).
  const shown = await h.shownMessages(bob);
  assert.deepEqual(shown.map((m) => m.text), ['before the restart', 'typed while offline', 'welcome back']);
  assert.equal(await connectionState(alice), 'connected');
  for (const page of [alice, bob]) assert.deepEqual(h.pageProblems(page), []);
  await alice.context().close();
  await bob.context().close();
});

test('the page shows when the browser is offline and sends what was typed once back online', async () => {
  const dave = await h.openPage(browser, server.url);
  const erin = await h.openPage(browser, server.url);
  await h.join(dave, 'dave');
  await h.join(erin, 'erin');
  await dave.context().setOffline(true);
  await dave.waitForSelector('#connection[data-state="offline"]');
  assert.equal(await dave.locator('#connection-text').textContent(), 'Offline: waiting for the network');
  await dave.getByLabel('Message', { exact: true }).fill('written on the train');
  await dave.getByLabel('Message', { exact: true }).press('Enter');
  await dave.locator('#messages .message.own[data-state="queued"]').waitFor();

  await dave.context().setOffline(false);
  await dave.waitForSelector('#connection[data-state="connected"]');
  await h.waitForMessage(erin, 'dave', 'written on the train');
  await dave.waitForSelector('#messages .message.own[data-state="sent"]');
  assert.deepEqual(h.pageProblems(dave), []);
  await dave.context().close();
  await erin.context().close();
});

test('a message the server refuses is marked as not sent and can be retried', async () => {
  const page = await h.openPage(browser, server.url);
  await h.join(page, 'carol');
  // 2100 two-byte characters: within the input's length, beyond the server's 4096-byte limit.
  await page.getByLabel('Message', { exact: true }).fill('é'.repeat(2100));
  await page.getByLabel('Message', { exact: true }).press('Enter');
  const failed = page.locator('#messages .message.own[data-state="failed"]');
  await failed.waitFor();
  assert.match(await failed.locator('.delivery').textContent(), /^Not sent: /);
  assert.equal(await failed.locator('.retry').isVisible(), true);
  assert.deepEqual(h.pageProblems(page), []);
  await page.context().close();
});
