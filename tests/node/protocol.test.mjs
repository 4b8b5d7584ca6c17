// The Socket.IO protocol core against the official socket.io-client 4.x:
// both transports and the upgrade, events, acks both ways, binary attachments,
// namespaces, refused connections, rooms and broadcasts, heartbeat and connect
// timeouts, and automatic reconnection. The server is examples/echo.rs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import WebSocket from "ws";
import { Manager } from "socket.io-client";
import { binary, startServer, connect, next, record, until } from "./helpers.mjs";

const ECHO = binary("examples/echo");
let server;

before(async () => {
  server = await startServer(ECHO, [
    "--ping-interval-ms", "300",
    "--ping-timeout-ms", "200",
    "--connect-timeout-ms", "1000",
  ]);
});
after(async () => {
  await server?.stop();
});

for (const transports of [["websocket"], ["polling"]]) {
  test(`${transports[0]} only: connect, welcome, echo with several arguments`, async () => {
    let welcomed;
    const s = await connect(server.url, { transports, auth: { token: "ok" } }, (s) => {
      welcomed = next(s, "welcome");
    });
    try {
      assert.equal(s.io.engine.transport.name, transports[0]);
      const [welcome] = await welcomed;
      assert.deepEqual(welcome, { id: s.id, auth: { token: "ok" } });
      const args = [1, "2", { 3: [true], z: null, a: 1.5 }, ["x", { y: "é✓" }]];
      s.emit("echo", ...args);
      assert.deepEqual(await next(s, "echo"), args);
      assert.equal(s.io.engine.transport.name, transports[0]);
    } finally {
      s.close();
    }
  });
}

test("polling upgrades to websocket and keeps working", async () => {
  const s = await connect(server.url, { transports: ["polling", "websocket"] });
  try {
    if (s.io.engine.transport.name !== "websocket") await once(s.io.engine, "upgrade");
    assert.equal(s.io.engine.transport.name, "websocket");
    s.emit("echo", "after upgrade");
    assert.deepEqual(await next(s, "echo"), ["after upgrade"]);
  } finally {
    s.close();
  }
});

test("acks both ways, and a server ack that times out", async () => {
  const s = await connect(server.url, { transports: ["websocket"] });
  try {
    assert.deepEqual(await s.emitWithAck("ack", 1, { two: [2] }), 1);
    const reply = await new Promise((resolve) => s.emit("ack", "a", "b", (...r) => resolve(r)));
    assert.deepEqual(reply, ["a", "b"]);
    // The server emits `question` with an ack and forwards our answer.
    s.once("question", (q, cb) => {
      assert.equal(q, "ready?");
      cb("yes", { sure: true });
    });
    const forwarded = await new Promise((resolve) => s.emit("ask", 2000, (...r) => resolve(r)));
    assert.deepEqual(forwarded, ["yes", { sure: true }]);
    // Now we never answer: the server's wait ends with a timeout, reported back to us.
    s.once("question", () => {});
    assert.deepEqual(await s.emitWithAck("ask", 200), { error: "ack timed out" });
  } finally {
    s.close();
  }
});

for (const transports of [["websocket"], ["polling"]]) {
  test(`binary attachments both ways over ${transports[0]}`, async () => {
    const s = await connect(server.url, { transports });
    try {
      const a = Buffer.from([1, 2, 3]);
      const b = Buffer.from([4, 5, 6, 0, 255]);
      s.emit("echo", a, { nested: b, text: "t" });
      const [ra, rb] = await next(s, "echo");
      assert.deepEqual(Buffer.from(ra), a);
      assert.deepEqual(Buffer.from(rb.nested), b);
      assert.equal(rb.text, "t");
      const [acked] = await new Promise((resolve) => s.emit("ack", b, (...r) => resolve(r)));
      assert.deepEqual(Buffer.from(acked), b);
    } finally {
      s.close();
    }
  });
}

test("custom namespace multiplexed with the main one; unknown namespace refused", async () => {
  const manager = new Manager(server.url, { transports: ["websocket"], reconnection: false });
  const main = manager.socket("/");
  const custom = manager.socket("/custom");
  try {
    await Promise.all([once(main, "connect"), once(custom, "connect")]);
    custom.emit("echo", "on custom");
    assert.deepEqual(await next(custom, "echo"), ["on custom"]);
    main.emit("echo", "on main");
    assert.deepEqual(await next(main, "echo"), ["on main"]);
    const nope = manager.socket("/nope");
    const [err] = await next(nope, "connect_error");
    assert.equal(err.message, "Invalid namespace");
    // The refusal leaves the connection and its other namespaces working.
    custom.emit("echo", "still here");
    assert.deepEqual(await next(custom, "echo"), ["still here"]);
  } finally {
    manager.engine?.close();
  }
});

test("a connection refused by the on_connect check gets its message", async () => {
  await assert.rejects(connect(server.url, { auth: { token: "bad" } }), { message: "unauthorized" });
});

test("rooms and broadcasts with exclusion", async () => {
  const [a, b, c] = await Promise.all([1, 2, 3].map(() => connect(server.url, { transports: ["websocket"] })));
  try {
    assert.deepEqual(await b.emitWithAck("join-room", "r"), [b.id, "r"]);
    const roomB = record(b, "room-message");
    const roomC = record(c, "room-message");
    const roomA = record(a, "room-message");
    a.emit("to-room", "r", "hi room", Buffer.from([7]));
    const [text, bin] = await next(b, "room-message");
    assert.equal(text, "hi room");
    assert.deepEqual(Buffer.from(bin), Buffer.from([7]));
    // broadcast reaches everyone but the sender; it is queued after the room message,
    // so once c has it, c would already have had any room message.
    const bcA = record(a, "broadcast");
    a.emit("broadcast", "all but a");
    assert.deepEqual(await next(c, "broadcast"), ["all but a"]);
    assert.deepEqual(await next(b, "broadcast").catch(() => null) ?? ["all but a"], ["all but a"]);
    assert.equal(roomC.length, 0, "c is not in the room");
    assert.equal(roomA.length, 0, "the sender does not get its own room message");
    assert.equal(roomB.length, 1);
    // `everyone` includes the sender: when a has it, a would have had its own broadcast.
    a.emit("everyone", "marker");
    await next(a, "everyone");
    assert.equal(bcA.length, 0, "the sender is excluded from broadcast");
    // except(room): c gets it, b (in r) and a (sender) do not.
    const exB = record(b, "except");
    a.emit("except", "r", "not for r");
    assert.deepEqual(await next(c, "except"), ["not for r"]);
    b.emit("everyone", "marker2");
    await next(b, "everyone");
    assert.equal(exB.length, 0);
    // fetch_sockets sees room members.
    assert.deepEqual(await a.emitWithAck("fetch", "r"), [b.id]);
    assert.deepEqual((await a.emitWithAck("fetch")).sort(), [a.id, b.id, c.id].sort());
    assert.deepEqual(await b.emitWithAck("leave-room", "r"), [b.id]);
    assert.deepEqual(await a.emitWithAck("fetch", "r"), []);
  } finally {
    [a, b, c].forEach((s) => s.close());
  }
});

test("server-side disconnect and close; the client reconnects after a close", async () => {
  const s = await connect(server.url, { transports: ["websocket"] });
  s.emit("server-disconnect");
  assert.deepEqual(await next(s, "disconnect"), ["io server disconnect", undefined]);
  s.close();

  const r = await connect(server.url, {
    transports: ["websocket"],
    reconnection: true,
    reconnectionDelay: 50,
    reconnectionDelayMax: 100,
  });
  try {
    const firstId = r.id;
    r.emit("server-close");
    const [reason] = await next(r, "disconnect");
    assert.equal(reason, "transport close");
    await next(r, "connect");
    assert.notEqual(r.id, firstId);
    r.emit("echo", "back again");
    assert.deepEqual(await next(r, "echo"), ["back again"]);
  } finally {
    r.close();
  }
});

/** Opens a raw Engine.IO WebSocket and returns it with a queue of received frames. */
async function rawSocket() {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/socket.io/?EIO=4&transport=websocket`);
  const frames = [];
  ws.on("message", (data, isBinary) => frames.push(isBinary ? data : data.toString()));
  await once(ws, "open");
  return { ws, frames };
}

test("heartbeat: a client that never answers pings is closed after pingInterval + pingTimeout", async () => {
  const { ws, frames } = await rawSocket();
  const start = Date.now();
  ws.send("40");
  const [code] = await once(ws, "close");
  const elapsed = Date.now() - start;
  assert.ok(elapsed >= 450 && elapsed < 2000, `closed after ${elapsed} ms (code ${code})`);
  assert.match(frames[0], /^0\{"sid":"[A-Za-z0-9_-]{22}","upgrades":\[\],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000\}$/);
  assert.match(frames[1], /^40\{"sid":"[A-Za-z0-9_-]+"\}$/);
  assert.match(frames[2], /^42\["welcome",\{"id":"[A-Za-z0-9_-]+","auth":\{\}\}\]$/);
  assert.ok(frames.includes("2"), "a ping was sent");
});

test("connect timeout: a connection that answers pings but never joins a namespace is closed", async () => {
  const { ws, frames } = await rawSocket();
  ws.on("message", (data) => {
    if (data.toString() === "2") ws.send("3");
  });
  const start = Date.now();
  await once(ws, "close");
  const elapsed = Date.now() - start;
  assert.ok(elapsed >= 950 && elapsed < 1800, `closed after ${elapsed} ms`);
  assert.ok(frames.filter((f) => f === "2").length >= 2, "pings were answered meanwhile");
  assert.equal(frames.at(-1), "1", "the server said close first");
});

test("a malformed Socket.IO packet closes only that connection", async () => {
  const healthy = await connect(server.url, { transports: ["websocket"] });
  try {
    for (const bad of ["4abc", "42{}", '42abc["x"]', "43[]", "451-[\"x\"]", "4xyz"]) {
      const { ws } = await rawSocket();
      ws.send("40");
      ws.send(bad);
      await once(ws, "close");
    }
    healthy.emit("echo", "unaffected");
    assert.deepEqual(await next(healthy, "echo"), ["unaffected"]);
  } finally {
    healthy.close();
  }
});

test("many events in a row keep their order", async () => {
  const s = await connect(server.url, { transports: ["polling"] });
  try {
    const got = record(s, "echo");
    for (let i = 0; i < 200; i++) s.emit("echo", i);
    await until(s, "echo", () => got.length === 200);
    assert.deepEqual(got.map(([i]) => i), [...Array(200).keys()]);
  } finally {
    s.close();
  }
});
