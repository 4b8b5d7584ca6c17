// The chat and Q&A application (hubbub-server, in-memory store) against the official
// socket.io-client: the tutorial's chat, history replay, joined/left counts, the Q&A
// rules and replay, sendToAll, bad input, rate limits, health/readiness/metrics, and
// graceful shutdown on SIGTERM.
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { binary, startServer, connect, next, record, until, get } from "./helpers.mjs";

const SERVER = binary("hubbub-server");

/**
 * The arguments of an event as the application emitted them: connection state recovery is on
 * by default, so every event ends with its offset (a string; recovery.test.mjs checks them).
 */
function withoutOffset(s, args) {
  if (s._pid && typeof args.at(-1) === "string") args.pop();
  return args;
}

/** Resolves with the next `event` of `s`, its offset taken off. */
async function nextEvent(s, event) {
  return withoutOffset(s, await next(s, event));
}

/** Connects, records every chat event, and resolves once the welcome has arrived. */
async function client(url, opts = {}) {
  const seen = { messages: [], question: [], answer: [], joined: [], left: [] };
  let welcomed;
  const s = await connect(url, { transports: ["websocket"], ...opts }, (s) => {
    for (const ev of Object.keys(seen)) s.on(ev, (...args) => seen[ev].push(withoutOffset(s, args)));
    welcomed = until(s, "messages", () => seen.messages.length > 0);
  });
  await welcomed;
  s.seen = seen;
  return s;
}

test("the tutorial's chat: join, messages to others only, history of the last 10, joined/left", async () => {
  const server = await startServer(SERVER);
  const clients = [];
  try {
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => client(server.url)));
    clients.push(a, b, c);
    assert.deepEqual(a.seen.messages[0], [{ hello: "Hello World" }]);

    assert.deepEqual(await a.emitWithAck("join", "  ann "), { ok: true, name: "ann", online: 1 });
    await until(b, "joined", () => b.seen.joined.length === 1);
    await until(c, "joined", () => c.seen.joined.length === 1);
    assert.deepEqual(b.seen.joined[0], [{ name: "ann", online: 1 }]);
    assert.deepEqual(await b.emitWithAck("join", "bob"), { ok: true, name: "bob", online: 2 });
    assert.deepEqual(await c.emitWithAck("join", "cy"), { ok: true, name: "cy", online: 3 });
    await until(a, "joined", () => a.seen.joined.length === 2);
    assert.deepEqual(a.seen.joined.map(([j]) => j.name), ["bob", "cy"], "a sees bob and cy join, not itself");

    const before = a.seen.messages.length;
    const acks = [];
    for (let i = 1; i <= 12; i++) acks.push(await a.emitWithAck("messages", `m${i}`));
    for (const [i, ack] of acks.entries()) {
      assert.equal(ack.ok, true);
      assert.equal(typeof ack.ts, "number");
      if (i > 0) assert.ok(ack.id > acks[i - 1].id, "ids increase");
    }
    const fromA = (s) => s.seen.messages.filter(([m]) => m?.name === "ann").map(([m]) => m.text);
    await until(b, "messages", () => fromA(b).length === 12);
    await until(c, "messages", () => fromA(c).length === 12);
    assert.deepEqual(fromA(b), acks.map((_, i) => `m${i + 1}`));
    assert.equal(a.seen.messages.length, before, "the sender does not get its own messages back");
    const got = b.seen.messages.find(([m]) => m?.text === "m1")[0];
    assert.deepEqual(Object.keys(got), ["id", "name", "text", "ts"]);
    assert.deepEqual(got, { id: acks[0].id, name: "ann", text: "m1", ts: acks[0].ts });

    // A fourth client that joins gets exactly the last 10, oldest first.
    const d = await client(server.url);
    clients.push(d);
    const dAck = await d.emitWithAck("join", "dee");
    assert.deepEqual(dAck, { ok: true, name: "dee", online: 4 });
    const history = d.seen.messages.slice(1).map(([m]) => m.text);
    assert.deepEqual(history, ["m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11", "m12"]);

    assert.deepEqual(await d.emitWithAck("who"), { online: 4, names: ["ann", "bob", "cy", "dee"] });

    // Joining again renames.
    assert.deepEqual(await d.emitWithAck("join", "dana"), { ok: true, name: "dana", online: 4 });
    assert.deepEqual((await a.emitWithAck("who")).names, ["ann", "bob", "cy", "dana"]);

    // Leaving: the others get `left` with the new count.
    c.close();
    await until(a, "left", () => a.seen.left.length === 1);
    assert.deepEqual(a.seen.left[0], [{ name: "cy", online: 3 }]);
  } finally {
    clients.forEach((s) => s.close());
    await server.stop();
  }
});

test("Q&A: one question per connection, answers with both arguments, replay of the newest 20", async () => {
  const server = await startServer(SERVER);
  const clients = [];
  try {
    const [a, b] = await Promise.all([client(server.url), client(server.url)]);
    clients.push(a, b);
    const qSeen = nextEvent(b, "question");
    assert.deepEqual(await a.emitWithAck("question", "Why is the sky blue?"), { ok: true });
    assert.deepEqual(await qSeen, ["Why is the sky blue?"]);
    assert.deepEqual(await a.emitWithAck("question", "And the sea?"), { error: "one question per connection" });
    const aSeen = nextEvent(a, "answer");
    assert.deepEqual(await b.emitWithAck("answer", "Why is the sky blue?", "Rayleigh scattering"), {
      ok: true,
      stored: true,
    });
    assert.deepEqual(await aSeen, ["Why is the sky blue?", "Rayleigh scattering"]);
    const aSeen2 = nextEvent(a, "answer");
    assert.deepEqual(await b.emitWithAck("answer", "not a stored question", "still broadcast"), {
      ok: true,
      stored: false,
    });
    assert.deepEqual(await aSeen2, ["not a stored question", "still broadcast"]);
    assert.equal(b.seen.question.length, 1, "the refused second question was not broadcast");

    // 21 more questions, one per connection: 22 in all, the newest 20 are kept.
    for (let i = 1; i <= 21; i++) {
      const q = await client(server.url);
      assert.deepEqual(await q.emitWithAck("question", `q${i}`), { ok: true });
      q.close();
    }
    assert.deepEqual(await b.emitWithAck("answer", "q21", "a21"), { ok: true, stored: true });
    const late = await client(server.url);
    clients.push(late);
    await late.emitWithAck("who"); // everything sent on connection precedes this ack
    assert.deepEqual(late.seen.question.map(([q]) => q), Array.from({ length: 20 }, (_, i) => `q${i + 2}`));
    assert.deepEqual(late.seen.answer, [["q21", "a21"]]);
  } finally {
    clients.forEach((s) => s.close());
    await server.stop();
  }
});

test("sendToAll relays its arguments untouched, binary included, and stores nothing", async () => {
  const server = await startServer(SERVER);
  const [a, b] = await Promise.all([client(server.url), client(server.url, { transports: ["polling"] })]);
  try {
    const args = [1, "2", { 3: [true], nested: { z: null } }, Buffer.from([9, 8, 7])];
    const relayed = new Promise((resolve) => b.once("messages", (...got) => resolve(withoutOffset(b, got))));
    a.emit("sendToAll", ...args);
    const got = await relayed;
    assert.deepEqual(got.slice(0, 3), args.slice(0, 3));
    assert.deepEqual(Buffer.from(got[3]), args[3]);
    const count = b.seen.messages.length;
    await b.emitWithAck("join", "bob");
    assert.equal(b.seen.messages.length, count, "history is still empty after sendToAll");
  } finally {
    a.close();
    b.close();
    await server.stop();
  }
});

test("bad input gets an error ack, is not stored or broadcast, and is counted", async () => {
  const server = await startServer(SERVER, ["--max-message-bytes", "16"]);
  const [a, b] = await Promise.all([client(server.url), client(server.url)]);
  try {
    assert.deepEqual(await a.emitWithAck("messages", "hi"), { error: "not joined" });
    assert.deepEqual(await a.emitWithAck("join", ""), { error: "bad nickname: empty" });
    assert.deepEqual(await a.emitWithAck("join", "x".repeat(33)), { error: "bad nickname: longer than 32 characters" });
    assert.deepEqual(await a.emitWithAck("join", "a\u0007b"), { error: "bad nickname: control characters" });
    assert.deepEqual(await a.emitWithAck("join", 42), { error: "wrong argument type or count: nickname must be a string" });
    assert.deepEqual(await a.emitWithAck("join", "ann", "extra"), { error: "wrong argument type or count: join takes one nickname" });
    assert.deepEqual((await a.emitWithAck("join", "ann")).ok, true);
    assert.deepEqual(await a.emitWithAck("messages", "   "), { error: "empty text" });
    assert.deepEqual(await a.emitWithAck("messages", "x".repeat(17)), { error: "text too long (max 16 bytes)" });
    assert.deepEqual(await a.emitWithAck("messages", { text: "obj" }), { error: "wrong argument type or count: text must be a string" });
    assert.deepEqual(await a.emitWithAck("question", 5), { error: "wrong argument type or count: text must be a string" });
    assert.deepEqual(await a.emitWithAck("answer", "only one"), { error: "wrong argument type or count: answer takes a question and an answer" });
    a.emit("no-such-event", 1);
    assert.deepEqual(await b.emitWithAck("join", "bob"), { ok: true, name: "bob", online: 2 });
    assert.equal(b.seen.messages.length, 1, "nothing was stored: bob's history is empty");
    assert.equal(b.seen.question.length, 0);

    const metrics = (await get(`${server.url}/metrics`)).text;
    const value = (line) => Number(metrics.split("\n").find((l) => l.startsWith(line))?.split(" ").pop());
    assert.equal(value('hubbub_events_rejected_total{reason="bad_nickname"}'), 3);
    assert.equal(value('hubbub_events_rejected_total{reason="bad_arguments"}'), 5);
    assert.equal(value('hubbub_events_rejected_total{reason="not_joined"}'), 1);
    assert.equal(value('hubbub_events_rejected_total{reason="empty_text"}'), 1);
    assert.equal(value('hubbub_events_rejected_total{reason="text_too_long"}'), 1);
    assert.equal(value('hubbub_events_received_total{event="other"}'), 1);
    assert.equal(value('hubbub_events_received_total{event="join"}'), 7);
  } finally {
    a.close();
    b.close();
    await server.stop();
  }
});

test("flooding is rate limited, and a client that keeps flooding is disconnected", async () => {
  const server = await startServer(SERVER, ["--rate-limit", "5", "--rate-burst", "10"]);
  const [flood, calm] = await Promise.all([client(server.url), client(server.url)]);
  try {
    await flood.emitWithAck("join", "flood");
    const replies = [];
    const gone = once(flood, "disconnect");
    for (let i = 0; i < 40; i++) flood.emit("messages", `spam ${i}`, (r) => replies.push(r));
    const [reason] = await gone;
    assert.equal(reason, "transport close");
    const limited = replies.filter((r) => r.error === "rate limit exceeded").length;
    const accepted = replies.filter((r) => r.ok).length;
    assert.ok(accepted >= 8 && accepted <= 11, `accepted ${accepted} (burst 10, the join took one)`);
    assert.ok(limited >= 1, "the flooder was told before being disconnected");
    assert.deepEqual((await calm.emitWithAck("join", "calm")).ok, true, "others are unaffected");
  } finally {
    flood.close();
    calm.close();
    await server.stop();
  }
});

test("healthz, readyz and metrics; SIGTERM drains clients and exits 0", async () => {
  const server = await startServer(SERVER, ["--shutdown-delay-ms", "300", "--shutdown-grace-secs", "5"]);
  const clients = [];
  try {
    assert.deepEqual(await get(`${server.url}/healthz`).then((r) => [r.status, r.text]), [200, "ok"]);
    assert.deepEqual(await get(`${server.url}/readyz`).then((r) => [r.status, r.text]), [200, "ready"]);
    const page = await get(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-security-policy"), /script-src 'self'/);

    const ws = await client(server.url);
    const poll = await client(server.url, { transports: ["polling"] });
    clients.push(ws, poll);
    await ws.emitWithAck("join", "ann");
    await ws.emitWithAck("messages", "hello");
    const metrics = (await get(`${server.url}/metrics`)).text;
    assert.match(metrics, /^hubbub_connections_open\{transport="websocket"\} 1$/m);
    assert.match(metrics, /^hubbub_connections_open\{transport="polling"\} 1$/m);
    assert.match(metrics, /^hubbub_events_received_total\{event="messages"\} 1$/m);
    assert.match(metrics, /^hubbub_broadcast_recipients_count [1-9]/m);
    assert.match(metrics, /^process_resident_memory_bytes \d+/m);
    assert.match(metrics, /^hubbub_packets_received_total [1-9]/m);
    for (const line of metrics.split("\n").filter((l) => l.startsWith("hubbub_"))) {
      assert.doesNotMatch(line, /ann|hello/, "no user data in labels");
    }

    const disconnects = [once(ws, "disconnect"), once(poll, "disconnect")];
    const started = Date.now();
    const draining = server.logged("shutting down");
    server.proc.kill("SIGTERM");
    // Once the signal is handled, readiness is 503 and new sessions are refused while draining.
    assert.equal((await draining).signal, "SIGTERM");
    const ready = await get(`${server.url}/readyz`);
    assert.deepEqual([ready.status, ready.text], [503, "not ready: draining"]);
    const handshake = await get(`${server.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(handshake.status, 503);
    const reasons = (await Promise.all(disconnects)).map(([r]) => r);
    assert.deepEqual(reasons, ["transport close", "transport close"]);
    const { code } = await server.exited;
    assert.equal(code, 0);
    assert.ok(Date.now() - started < 5000, "exited within the grace period");
  } finally {
    clients.forEach((s) => s.close());
    await server.stop();
  }
});

test("invalid settings stop the program with a message naming the setting", async () => {
  const { spawnSync } = await import("node:child_process");
  const r = spawnSync(SERVER, ["--history-size", "0"], { encoding: "utf8" });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--history-size \(HUBBUB_HISTORY_SIZE\): 0 is outside 1..=1000/);
  const e = spawnSync(SERVER, [], { encoding: "utf8", env: { ...process.env, HUBBUB_PING_TIMEOUT_MS: "abc" } });
  assert.notEqual(e.status, 0);
  assert.match(e.stderr, /ping-timeout-ms/);
});
