// Connection state recovery across replicas: three hubbub-server replicas share a private
// redis-server; the client reaches them through a small TCP proxy that the test re-points, as
// a Kubernetes Service would after a pod went away. Its replica is stopped with SIGTERM (a
// rollout) in one test and killed with SIGKILL (OOM, node loss) in the other; the official
// socket.io-client recovers on another replica with the same id, its nickname, and every
// message sent meanwhile, once each, in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { binary, startServer, connect, until, get, startRedis, startProxy } from "./helpers.mjs";

const SERVER = binary("hubbub-server");

async function replicas(redis, n) {
  const args = ["--redis-url", redis.url, "--shutdown-grace-secs", "2", "--rate-limit", "1000", "--rate-burst", "1000"];
  const servers = await Promise.all(Array.from({ length: n }, () => startServer(SERVER, args)));
  // Ready: Redis link up, subscriptions in place, the recovery log's head read.
  for (const s of servers) {
    for (let i = 0; i < 200 && (await get(`${s.url}/readyz`)).status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 25)); // polling readiness: no event to await
    }
    assert.equal((await get(`${s.url}/readyz`)).status, 200, `replica ${s.url} ready`);
  }
  return servers;
}

/** Official client recording chat messages (offset taken off) and recoveries. */
async function chatClient(url, opts = {}) {
  const s = await connect(url, {
    transports: ["websocket"],
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 200,
    ...opts,
  }, (s) => {
    s.messages = [];
    s.offsets = [];
    s.on("messages", (...args) => {
      if (s._pid && typeof args.at(-1) === "string") {
        const offset = args.pop();
        // The welcome is a direct emit carrying the log head (see recovery.test.mjs).
        if (args[0]?.hello === undefined) s.offsets.push(offset);
      }
      s.messages.push(args[0]);
    });
  });
  return s;
}

const textsFrom = (s, name) => s.messages.filter((m) => m?.name === name).map((m) => m.text);

async function metric(url, prefix) {
  const text = (await get(`${url}/metrics`)).text;
  const line = text.split("\n").find((l) => l.startsWith(prefix + " "));
  return line ? Number(line.split(" ").pop()) : 0;
}

for (const signal of ["SIGTERM", "SIGKILL"]) {
  test(`its replica gets ${signal}: the client recovers on another replica with every message, none twice`, async () => {
    const redis = await startRedis();
    const servers = await replicas(redis, 3);
    const [first, second, third] = servers;
    const proxy = await startProxy(first.port);
    const clients = [];
    try {
      const ann = await chatClient(third.url); // the sender, on a replica that stays
      const bob = await chatClient(proxy.url);
      clients.push(ann, bob);
      assert.equal(typeof bob._pid, "string", "the replica offered recovery (a pid)");
      assert.equal((await ann.emitWithAck("join", "ann")).ok, true);
      assert.equal((await bob.emitWithAck("join", "bob")).ok, true);
      assert.deepEqual(await bob.emitWithAck("question", "Who survives?"), { ok: true });
      await ann.emitWithAck("messages", "before");
      await until(bob, "messages", () => textsFrom(bob, "ann").length === 1);
      const id = bob.id;

      // The Service no longer sends new connections anywhere until the test says so; the
      // replica bob is on goes away; ann keeps talking.
      proxy.point(null);
      const dropped = once(bob, "disconnect");
      await first.stop(signal);
      await dropped;
      for (let i = 1; i <= 5; i++) assert.equal((await ann.emitWithAck("messages", `meanwhile ${i}`)).ok, true);

      proxy.point(second.port);
      if (!bob.connected) await once(bob, "connect");
      assert.equal(bob.recovered, true, "recovered on the second replica");
      assert.equal(bob.id, id, "same socket id");
      assert.deepEqual(textsFrom(bob, "ann"), ["before", "meanwhile 1", "meanwhile 2", "meanwhile 3", "meanwhile 4", "meanwhile 5"]);
      assert.equal(new Set(bob.offsets).size, bob.offsets.length, "no offset twice");

      // Live delivery continues, once; the nickname and the question rule came along.
      await ann.emitWithAck("messages", "after");
      await until(bob, "messages", () => textsFrom(bob, "ann").length === 7);
      assert.equal((await bob.emitWithAck("messages", "bob is back")).ok, true);
      await until(ann, "messages", () => textsFrom(ann, "bob").length === 1);
      assert.deepEqual(await bob.emitWithAck("question", "Another?"), { error: "one question per connection" });
      assert.equal(await metric(second.url, 'hubbub_recovery_total{result="recovered"}'), 1);
      assert.equal(await metric(second.url, "hubbub_recovery_replayed_events_total"), 5);
    } finally {
      clients.forEach((s) => s.close());
      await proxy.close();
      await Promise.all(servers.map((s) => s.stop("SIGKILL")));
      await redis.stop();
    }
  });
}

test("three replicas, fifty messages, two replica changes in the middle: all fifty once, in order", async () => {
  const redis = await startRedis();
  const servers = await replicas(redis, 3);
  const proxy = await startProxy(servers[0].port);
  const clients = [];
  try {
    const ann = await chatClient(servers[2].url);
    const bob = await chatClient(proxy.url);
    clients.push(ann, bob);
    await ann.emitWithAck("join", "ann");
    await bob.emitWithAck("join", "bob");
    let recoveries = 0;
    bob.on("connect", () => bob.recovered && recoveries++);
    for (let i = 1; i <= 50; i++) {
      if (i === 15) {
        proxy.point(servers[1].port);
        bob.io.engine.close(); // reconnects, through the proxy, to the second replica
      }
      if (i === 35) {
        proxy.point(servers[2].port);
        bob.io.engine.close();
      }
      assert.equal((await ann.emitWithAck("messages", `m${i}`)).ok, true);
      await new Promise((r) => setTimeout(r, 5)); // spread the sends over the reconnections
    }
    await until(bob, "messages", () => textsFrom(bob, "ann").length >= 50, 10000);
    if (!bob.connected) await once(bob, "connect");
    assert.deepEqual(textsFrom(bob, "ann"), Array.from({ length: 50 }, (_, i) => `m${i + 1}`));
    assert.equal(recoveries, 2);
  } finally {
    clients.forEach((s) => s.close());
    await proxy.close();
    await Promise.all(servers.map((s) => s.stop("SIGKILL")));
    await redis.stop();
  }
});

/** `INFO commandstats` of the redis-server on `port`: command name -> calls. */
async function commandCalls(port) {
  const socket = net.connect(port, "127.0.0.1");
  await once(socket, "connect");
  socket.write("INFO commandstats\r\n");
  let text = "";
  socket.setEncoding("utf8");
  for await (const chunk of socket) {
    text += chunk;
    const header = text.match(/^\$(\d+)\r\n/);
    if (header && Buffer.byteLength(text) >= header[0].length + Number(header[1]) + 2) break;
  }
  socket.destroy();
  const calls = {};
  for (const m of text.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) calls[m[1]] = Number(m[2]);
  return calls;
}

test("a broadcast costs one script call (one XADD, one PUBLISH) whatever the fan-out", async () => {
  const redis = await startRedis();
  const servers = await replicas(redis, 3);
  const clients = [];
  try {
    // Six listeners spread over the three replicas, one sender.
    const ann = await chatClient(servers[0].url);
    clients.push(ann);
    await ann.emitWithAck("join", "ann");
    for (let i = 0; i < 6; i++) {
      const c = await chatClient(servers[i % 3].url);
      clients.push(c);
      await c.emitWithAck("join", `listener${i}`);
    }
    const listeners = clients.slice(1);
    const before = await commandCalls(redis.port);
    for (let i = 1; i <= 20; i++) await ann.emitWithAck("messages", `n${i}`);
    for (const c of listeners) await until(c, "messages", () => textsFrom(c, "ann").length === 20);
    const after = await commandCalls(redis.port);
    const delta = (name) => (after[name] || 0) - (before[name] || 0);
    assert.equal(delta("xadd"), 20, "one XADD per broadcast");
    assert.equal(delta("publish"), 20, "one PUBLISH per broadcast");
    assert.equal(delta("xrange") + delta("getdel"), 0, "nothing is read back while nobody recovers");
  } finally {
    clients.forEach((s) => s.close());
    await Promise.all(servers.map((s) => s.stop("SIGKILL")));
    await redis.stop();
  }
});
