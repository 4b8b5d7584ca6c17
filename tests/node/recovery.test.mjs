// Connection state recovery on one node (hubbub-server, in-memory log) against the official
// socket.io-client 4.x: a dropped transport comes back with the same socket id, its nickname
// and one-question rule, and exactly the events it missed, in order, once each; expiry,
// trimming and the disabled setting fall back to a fresh session; the metrics count it all.
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { binary, startServer, connect, until, get } from "./helpers.mjs";

const SERVER = binary("hubbub-server");

/**
 * Connects with reconnection on (short delays) and records chat events with the offset that
 * ends each one taken off: `seen.messages` holds the message objects, `offsets` the offset of
 * every broadcast. The welcome is a direct emit: it carries the log head at the time it is
 * sent, which is the offset of the broadcast just before it when one came first (the
 * connection handler may run after another client's broadcast), so it is not counted there.
 */
export async function recoveringClient(url, { claim, ...opts } = {}) {
  const seen = { messages: [], question: [], joined: [], left: [], offsets: [] };
  const s = await connect(
    url,
    { transports: ["websocket"], reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100, ...opts },
    (s) => {
      // Claim another client's session in the first CONNECT, as the client does on a reconnection.
      if (claim) [s._pid, s._lastOffset] = [claim._pid, claim._lastOffset];
      for (const ev of ["messages", "question", "joined", "left"]) {
        s.on(ev, (...args) => {
          if (s._pid && typeof args[args.length - 1] === "string") {
            const offset = args.pop();
            if (args[0]?.hello === undefined) seen.offsets.push(offset);
          }
          seen[ev].push(args.length === 1 ? args[0] : args);
        });
      }
    },
  );
  s.seen = seen;
  return s;
}

/** The texts of the chat messages `s` received from `name`. */
const textsFrom = (s, name) => s.seen.messages.filter((m) => m?.name === name).map((m) => m.text);

/** Closes the client's transport (a network drop as the server sees it) and waits for 'disconnect'. */
async function dropTransport(s) {
  const gone = once(s, "disconnect");
  s.io.engine.close();
  const [reason] = await gone;
  return reason;
}

/** Metric value of the line starting with `prefix` (0 when absent). */
async function metric(url, prefix) {
  const text = (await get(`${url}/metrics`)).text;
  const line = text.split("\n").find((l) => l.startsWith(prefix + " "));
  return line ? Number(line.split(" ").pop()) : 0;
}

test("recovered after a dropped transport: same id, nickname and question rule, exactly the missed messages", async () => {
  const server = await startServer(SERVER);
  const clients = [];
  try {
    const a = await recoveringClient(server.url);
    const b = await recoveringClient(server.url, { reconnection: false });
    clients.push(a, b);
    assert.equal(typeof b._pid, "string", "CONNECT carried a pid");
    assert.equal((await a.emitWithAck("join", "ann")).ok, true);
    assert.equal((await b.emitWithAck("join", "bob")).ok, true);
    assert.deepEqual(await b.emitWithAck("question", "Is it recoverable?"), { ok: true });
    await a.emitWithAck("messages", "before");
    await until(b, "messages", () => textsFrom(b, "ann").length === 1);
    const id = b.id;

    // b's transport drops; ann keeps talking while b is away.
    assert.equal(await dropTransport(b), "forced close"); // the client closed it itself
    for (let i = 1; i <= 5; i++) assert.equal((await a.emitWithAck("messages", `missed ${i}`)).ok, true);

    const back = once(b, "connect");
    b.connect();
    await back;
    assert.equal(b.recovered, true, "the session was recovered");
    assert.equal(b.id, id, "same socket id");
    assert.deepEqual(textsFrom(b, "ann"), ["before", "missed 1", "missed 2", "missed 3", "missed 4", "missed 5"]);
    assert.equal(new Set(b.seen.offsets).size, b.seen.offsets.length, "no broadcast's offset was delivered twice");

    // Live traffic goes on after the replay, once.
    await a.emitWithAck("messages", "after");
    await until(b, "messages", () => textsFrom(b, "ann").length === 7);
    assert.equal(textsFrom(b, "ann").at(-1), "after");

    // The nickname and the one-question rule survived: no join needed, no second question.
    const reply = await b.emitWithAck("messages", "still bob");
    assert.equal(reply.ok, true, JSON.stringify(reply));
    await until(a, "messages", () => textsFrom(a, "bob").length === 1);
    assert.deepEqual(await b.emitWithAck("question", "A second one?"), { error: "one question per connection" });
    assert.deepEqual((await a.emitWithAck("who")).names.sort(), ["ann", "bob"]);

    assert.equal(await metric(server.url, "hubbub_recovery_attempts_total"), 1);
    assert.equal(await metric(server.url, 'hubbub_recovery_total{result="recovered"}'), 1);
    assert.equal(await metric(server.url, "hubbub_recovery_replayed_events_total"), 5);
  } finally {
    clients.forEach((s) => s.close());
    await server.stop();
  }
});

test("claimed while its old connection still looks open (half-open): restored from the live socket", async () => {
  const server = await startServer(SERVER);
  const clients = [];
  try {
    const a = await recoveringClient(server.url);
    const b = await recoveringClient(server.url, { reconnection: false });
    clients.push(a, b);
    assert.equal((await a.emitWithAck("join", "ann")).ok, true);
    assert.equal((await b.emitWithAck("join", "bob")).ok, true);
    assert.deepEqual(await b.emitWithAck("question", "Still there?"), { ok: true });
    await a.emitWithAck("messages", "before");
    await until(b, "messages", () => textsFrom(b, "ann").length === 1);

    // b's network goes silent without the server noticing: its session is still connected
    // there. What b last received is what a new connection of the same client claims.
    const claim = { _pid: b._pid, _lastOffset: b._lastOffset };
    const id = b.id;
    await a.emitWithAck("messages", "while half-open");
    const bClosed = once(b, "disconnect");
    const c = await recoveringClient(server.url, { reconnection: false, claim });
    clients.push(c);
    assert.equal(c.recovered, true, "restored from the session of a socket still connected");
    await bClosed; // the server closed the old connection first
    assert.equal(c.id, id, "same socket id");
    assert.deepEqual(textsFrom(c, "ann"), ["while half-open"], "exactly what was missed after the claim's offset");

    // The nickname and the one-question rule came with it.
    const reply = await c.emitWithAck("messages", "bob again");
    assert.equal(reply.ok, true, JSON.stringify(reply));
    await until(a, "messages", () => textsFrom(a, "bob").length === 1);
    assert.deepEqual(await c.emitWithAck("question", "And again?"), { error: "one question per connection" });
    assert.equal(await metric(server.url, 'hubbub_recovery_total{result="recovered"}'), 1);
  } finally {
    clients.forEach((s) => s.close());
    await server.stop();
  }
});

test("a client that had received no event yet (no offset) still recovers everything since it connected", async () => {
  const server = await startServer(SERVER, ["--welcome", ""]);
  const clients = [];
  try {
    const b = await recoveringClient(server.url, { reconnection: false });
    clients.push(b);
    assert.equal((await b.emitWithAck("join", "bob")).ok, true); // an ack, not an event: no offset
    const a = await recoveringClient(server.url);
    clients.push(a);
    await dropTransport(b);
    assert.equal(b._lastOffset, undefined, "b never received an event");
    assert.equal((await a.emitWithAck("join", "ann")).ok, true);
    await a.emitWithAck("messages", "one");
    await a.emitWithAck("messages", "two");
    const back = once(b, "connect");
    b.connect();
    await back;
    assert.equal(b.recovered, true);
    assert.deepEqual(b.seen.joined.map((j) => j.name), ["ann"]);
    assert.deepEqual(textsFrom(b, "ann"), ["one", "two"]);
  } finally {
    clients.forEach((s) => s.close());
    await server.stop();
  }
});

test("fifty messages with two transport drops in the middle: all fifty, once each, in order", async () => {
  const server = await startServer(SERVER, ["--rate-limit", "1000", "--rate-burst", "1000"]);
  const clients = [];
  try {
    const a = await recoveringClient(server.url);
    const b = await recoveringClient(server.url);
    clients.push(a, b);
    await a.emitWithAck("join", "ann");
    await b.emitWithAck("join", "bob");
    let recoveries = 0;
    b.on("connect", () => {
      if (b.recovered) recoveries++;
    });
    const id = b.id;
    for (let i = 1; i <= 50; i++) {
      if (i === 15 || i === 35) b.io.engine.close(); // reconnects by itself after 50-100 ms
      assert.equal((await a.emitWithAck("messages", `m${i}`)).ok, true);
      // Spread the messages over the drops: a few milliseconds between sends.
      await new Promise((r) => setTimeout(r, 5));
    }
    await until(b, "messages", () => textsFrom(b, "ann").length >= 50, 10000);
    if (!b.connected) await once(b, "connect");
    assert.deepEqual(textsFrom(b, "ann"), Array.from({ length: 50 }, (_, i) => `m${i + 1}`));
    assert.equal(recoveries, 2, "both drops were recovered");
    assert.equal(b.id, id);
  } finally {
    clients.forEach((s) => s.close());
    await server.stop();
  }
});

test("away longer than the window: not recovered, a fresh session that works normally", async () => {
  const server = await startServer(SERVER, ["--recovery-window-secs", "1"]);
  const clients = [];
  try {
    const a = await recoveringClient(server.url);
    const b = await recoveringClient(server.url, { reconnection: false });
    clients.push(a, b);
    await a.emitWithAck("join", "ann");
    await b.emitWithAck("join", "bob");
    await a.emitWithAck("messages", "seen");
    await until(b, "messages", () => textsFrom(b, "ann").length === 1);
    const { id, _pid: pid } = b;
    await dropTransport(b);
    await a.emitWithAck("messages", "while away");
    // The point of this test is time passing beyond the 1 s window; nothing to await instead.
    await new Promise((r) => setTimeout(r, 1600));
    const back = once(b, "connect");
    b.connect();
    await back;
    assert.equal(b.recovered, false);
    assert.notEqual(b.id, id);
    assert.notEqual(b._pid, pid, "a new private session id");
    // The normal flow: join again, get the history, chat.
    const before = b.seen.messages.length;
    assert.equal((await b.emitWithAck("join", "bob")).ok, true);
    assert.deepEqual(b.seen.messages.slice(before).map((m) => m.text), ["seen", "while away"]);
    await b.emitWithAck("messages", "hello again");
    await until(a, "messages", () => textsFrom(a, "bob").length === 1);
    assert.equal(await metric(server.url, 'hubbub_recovery_total{result="expired"}'), 1);
  } finally {
    clients.forEach((s) => s.close());
    await server.stop();
  }
});

test("missed more than the log keeps: not recovered (never a partial replay), normal flow", async () => {
  const server = await startServer(SERVER, ["--recovery-max-events", "5"]);
  const clients = [];
  try {
    const a = await recoveringClient(server.url);
    const b = await recoveringClient(server.url, { reconnection: false });
    clients.push(a, b);
    await a.emitWithAck("join", "ann");
    await b.emitWithAck("join", "bob");
    await a.emitWithAck("messages", "seen");
    await until(b, "messages", () => textsFrom(b, "ann").length === 1);
    await dropTransport(b);
    for (let i = 1; i <= 8; i++) await a.emitWithAck("messages", `m${i}`);
    const back = once(b, "connect");
    b.connect();
    await back;
    assert.equal(b.recovered, false);
    assert.deepEqual(textsFrom(b, "ann"), ["seen"], "nothing was replayed");
    assert.equal(b.seen.messages.at(-1)?.hello, "Hello World", "a fresh session is welcomed");
    const before = b.seen.messages.length;
    assert.equal((await b.emitWithAck("join", "bob")).ok, true);
    assert.deepEqual(b.seen.messages.slice(before).map((m) => m.text), [
      "seen", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    ]);
    assert.equal(await metric(server.url, 'hubbub_recovery_total{result="trimmed"}'), 1);
  } finally {
    clients.forEach((s) => s.close());
    await server.stop();
  }
});

test("recovery disabled (--recovery-window-secs 0): no pid, no offsets, never recovered", async () => {
  const server = await startServer(SERVER, ["--recovery-window-secs", "0"]);
  const clients = [];
  try {
    const a = await recoveringClient(server.url);
    const b = await recoveringClient(server.url, { reconnection: false });
    clients.push(a, b);
    assert.equal(b._pid, undefined, "no pid in the CONNECT reply");
    await a.emitWithAck("join", "ann");
    await b.emitWithAck("join", "bob");
    const got = new Promise((resolve) => b.once("messages", (...args) => resolve(args)));
    await a.emitWithAck("messages", "plain");
    assert.equal((await got).length, 1, "no offset argument");
    const id = b.id;
    await dropTransport(b);
    const back = once(b, "connect");
    b.connect();
    await back;
    assert.ok(!b.recovered, "not recovered");
    assert.notEqual(b.id, id);
    assert.equal(await metric(server.url, "hubbub_recovery_attempts_total"), 0);
  } finally {
    clients.forEach((s) => s.close());
    await server.stop();
  }
});
