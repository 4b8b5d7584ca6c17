// Connection state recovery in the page: bob's page reaches the server through a TCP proxy of
// the test's own. The proxy drops his connection (one node), or his replica is killed behind
// it and the proxy is re-pointed to another one (two replicas on Redis); meanwhile alice keeps
// talking and bob types a message. After the reconnection bob's page is recovered (it does not
// join again), shows every message exactly once and in order, and sends his queued message once.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let browser;
test.before(async () => { browser = await h.launchBrowser(); });
test.after(async () => { if (browser) await browser.close(); });

/** A counter of `server`'s /metrics (0 when absent). */
async function metric(server, prefix) {
  const { body } = await h.httpGet(server.url + '/metrics');
  const line = body.split('\n').find((l) => l.startsWith(prefix + ' '));
  return line ? Number(line.split(' ').pop()) : 0;
}

async function conversation({ alice, bob, cut, restore, recoveredOn, servers, joins: expectedJoins }) {
  await h.join(alice, 'alice');
  await h.join(bob, 'bob');
  await h.say(alice, 'one');
  await h.waitForMessage(bob, 'alice', 'one');

  await cut();
  await bob.waitForSelector('#connection[data-state="reconnecting"]');
  await h.say(alice, 'two');
  await h.say(alice, 'three');
  await bob.getByLabel('Message', { exact: true }).fill('typed while away');
  await bob.getByLabel('Message', { exact: true }).press('Enter');
  await bob.locator('#messages .message.own[data-state="queued"]').waitFor();

  await restore();
  await bob.waitForSelector('#connection[data-state="connected"]');
  await h.waitForMessage(bob, 'alice', 'three');
  await h.waitForMessage(alice, 'bob', 'typed while away');
  await h.say(alice, 'four');
  await h.waitForMessage(bob, 'alice', 'four');
  await bob.waitForFunction(() => [...document.querySelectorAll('#messages .message.own')]
    .some((li) => li.dataset.state === 'sent' && li.querySelector('.text').textContent === 'typed while away'));

  assert.equal(await metric(recoveredOn, 'hubbub_recovery_total{result="recovered"}'), 1, 'the page recovered its session');
  let joins = 0;
  for (const s of servers) joins += await metric(s, 'hubbub_events_received_total{event="join"}');
  assert.equal(joins, expectedJoins, 'nobody joined again');
  const bobSees = await h.shownMessages(bob);
  // bob's own message stays where he typed it (while away); what he missed comes after it,
  // in the order it was sent, each once.
  assert.deepEqual(bobSees.map((m) => `${m.name}: ${m.text}`),
    ['alice: one', 'bob: typed while away', 'alice: two', 'alice: three', 'alice: four']);
  const aliceSees = (await h.shownMessages(alice)).filter((m) => m.name === 'bob');
  assert.deepEqual(aliceSees.map((m) => m.text), ['typed while away'], 'sent exactly once');
  assert.match(await bob.locator('#join-status').textContent(), /You are chatting as bob/);
  for (const page of [alice, bob]) assert.deepEqual(h.pageProblems(page), []);
}

test('one node: the connection drops mid-conversation, the page recovers and shows everything once', async () => {
  const server = await new h.HubbubServer().start();
  const proxy = await h.startProxy(server.port);
  try {
    const alice = await h.openPage(browser, server.url);
    const bob = await h.openPage(browser, proxy.url);
    await conversation({
      alice,
      bob,
      cut: async () => { proxy.point(null); proxy.dropAll(); },
      restore: async () => proxy.point(server.port),
      recoveredOn: server,
      servers: [server],
      joins: 2,
    });
    await alice.context().close();
    await bob.context().close();
  } finally {
    await proxy.close();
    await server.stop();
  }
});
test('two replicas on Redis: bob\'s replica is killed, the page recovers on the other one', async () => {
  const redis = await h.startRedis();
  const args = ['--redis-url', redis.url];
  const first = await new h.HubbubServer(args).start();
  const second = await new h.HubbubServer(args).start();
  await Promise.all([first.waitReady(), second.waitReady()]);
  const proxy = await h.startProxy(first.port);
  try {
    const alice = await h.openPage(browser, second.url);
    const bob = await h.openPage(browser, proxy.url);
    await conversation({
      alice,
      bob,
      cut: async () => { proxy.point(null); await first.kill(); },
      restore: async () => proxy.point(second.port),
      recoveredOn: second,
      servers: [second], // the first one is gone with its counters: alice's join only
      joins: 1,
    });
    await alice.context().close();
    await bob.context().close();
  } finally {
    await proxy.close();
    await first.stop();
    await second.stop();
    await redis.stop();
  }
});
