// The Socket.IO Admin UI protocol (`--admin-ui`), with the official socket.io-client
// acting as the dashboard exactly as @socket.io/admin-ui 0.5's UI does (listeners for
// `session`, `config`, `server_stats`... registered once connected): credentials and
// session ids, `config`, `server_stats` counts, each command's effect on chat clients,
// read-only and development modes, the origin rule, the start-up refusal without
// credentials, and two replicas sharing a real redis-server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { binary, startServer, connect, next, until, get } from "./helpers.mjs";

const SERVER = binary("hubbub-server");
const USER = "admin";
const PASSWORD = "hubbub-admin-pw";
/** bcrypt (cost 4) of PASSWORD. */
const HASH = "$2b$04$zVqnqPCRrVq4j9yrWKrPe.pSAX0rk4svUBjKt75ON/S2TnbhW729q";
const AUTH_FLAGS = ["--admin-ui", "--admin-username", USER, "--admin-password-hash", HASH];
const ALL_COMMANDS = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"];

/**
 * Connects to the admin namespace like the UI: `auth` as given, listeners attached once
 * connected (so a `session` sent before the CONNECT reply would be lost, as in the UI).
 * Resolves with the socket and what it received, or rejects with the connect error.
 */
function dashboard(url, auth, opts = {}) {
  const socket = io(url + "/admin", {
    forceNew: true,
    reconnection: false,
    transports: ["websocket"],
    auth,
    ...opts,
  });
  const got = { session: [], config: [], server_stats: [], all_sockets: [], events: [] };
  const verbose = [
    "socket_connected",
    "socket_updated",
    "socket_disconnected",
    "room_joined",
    "room_left",
    "event_received",
    "event_sent",
  ];
  return new Promise((resolve, reject) => {
    socket.once("connect", () => {
      for (const ev of ["session", "config", "server_stats", "all_sockets"]) {
        socket.on(ev, (...args) => got[ev].push(args));
      }
      for (const ev of verbose) socket.on(ev, (...args) => got.events.push([ev, ...args]));
      socket.got = got;
      resolve(socket);
    });
    socket.once("connect_error", (err) => {
      socket.close();
      reject(err);
    });
  });
}

/** A chat client on `/`, resolved once connected. */
function chat(url, opts = {}) {
  return connect(url, { transports: ["websocket"], ...opts });
}

/** Resolves with the next `server_stats` satisfying `predicate` (checked on each). */
function stats(admin, predicate = () => true, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      admin.off("server_stats", check);
      reject(new Error("no matching server_stats; last: " + JSON.stringify(admin.got.server_stats.at(-1))));
    }, ms);
    function check(s) {
      if (predicate(s)) {
        clearTimeout(timer);
        admin.off("server_stats", check);
        resolve(s);
      }
    }
    admin.on("server_stats", check);
  });
}

/** Resolves once `socket` received `messages` with `text` as its argument. */
function message(socket, text, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message ${JSON.stringify(text)}`)), ms);
    socket.on("messages", function check(arg) {
      if (arg === text) {
        clearTimeout(timer);
        socket.off("messages", check);
        resolve();
      }
    });
  });
}

/** Records every `messages` argument. */
function inbox(socket) {
  const seen = [];
  socket.on("messages", (arg) => seen.push(arg));
  return seen;
}

test("refuses to start with --admin-ui and no credentials, naming the settings", async () => {
  const proc = spawn(SERVER, ["--bind", "127.0.0.1:0", "--admin-ui"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (c) => (stderr += c));
  const [code] = await once(proc, "exit");
  assert.notEqual(code, 0);
  assert.match(stderr, /--admin-username\/--admin-password-hash/);
  assert.match(stderr, /--admin-no-auth/);
  assert.match(stderr, /HUBBUB_ADMIN_USERNAME/);

  const bad = spawn(SERVER, ["--bind", "127.0.0.1:0", ...AUTH_FLAGS.slice(0, 4), "not-a-bcrypt-hash"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let badErr = "";
  bad.stderr.setEncoding("utf8");
  bad.stderr.on("data", (c) => (badErr += c));
  const [badCode] = await once(bad, "exit");
  assert.notEqual(badCode, 0);
  assert.match(badErr, /--admin-password-hash/);
});

test("credentials: refused with 'invalid credentials', then a session id that later connections reuse", async () => {
  const server = await startServer(SERVER, AUTH_FLAGS);
  const sockets = [];
  try {
    await assert.rejects(dashboard(server.url, { username: USER, password: "wrong" }), {
      message: "invalid credentials",
    });
    await assert.rejects(dashboard(server.url, { username: "root", password: PASSWORD }), {
      message: "invalid credentials",
    });
    await assert.rejects(dashboard(server.url, {}), { message: "invalid credentials" });
    await assert.rejects(dashboard(server.url, { sessionId: "made-up" }), { message: "invalid credentials" });

    const admin = await dashboard(server.url, { username: USER, password: PASSWORD });
    sockets.push(admin);
    // Sent after the CONNECT reply: the UI's listener, attached on connect, gets it.
    await until(admin, "session", () => admin.got.session.length === 1);
    const [sessionId] = admin.got.session[0];
    assert.match(sessionId, /^[A-Za-z0-9_-]{16,}$/);
    await until(admin, "config", () => admin.got.config.length === 1);
    assert.deepEqual(admin.got.config[0], [{ supportedFeatures: [...ALL_COMMANDS, "AGGREGATED_EVENTS"] }]);

    // A reload: the stored session id alone is enough, and no new session is issued.
    const again = await dashboard(server.url, { sessionId });
    sockets.push(again);
    await until(again, "config", () => again.got.config.length === 1);
    assert.equal(again.got.session.length, 0);
    // Over long-polling too (the UI's default transports).
    const polling = await dashboard(server.url, { sessionId }, { transports: ["polling"] });
    sockets.push(polling);
    await until(polling, "config", () => polling.got.config.length === 1);
  } finally {
    for (const s of sockets) s.close();
    await server.stop();
  }
});

test("server_stats every 2 s with the clients, transports, namespaces and aggregated events", async () => {
  const server = await startServer(SERVER, AUTH_FLAGS);
  const sockets = [];
  try {
    const admin = await dashboard(server.url, { username: USER, password: PASSWORD });
    sockets.push(admin);
    const first = await stats(admin);
    assert.equal(first.serverId, `${os.hostname()}#${server.proc.pid}`);
    assert.equal(first.hostname, os.hostname());
    assert.equal(first.pid, server.proc.pid);
    assert.equal(typeof first.uptime, "number");

    const ws = await chat(server.url);
    const polling = await chat(server.url, { transports: ["polling"] });
    sockets.push(ws, polling);
    const events = [];
    admin.on("server_stats", (s) => events.push(...s.aggregatedEvents));
    const t0 = Date.now();
    const counted = await stats(
      admin,
      (s) =>
        s.clientsCount === 3 &&
        s.pollingClientsCount === 1 &&
        s.namespaces.find((n) => n.name === "/")?.socketsCount === 2 &&
        s.namespaces.find((n) => n.name === "/admin")?.socketsCount === 1,
    );
    assert.ok(counted);
    const second = await stats(admin);
    assert.ok(Date.now() - t0 >= 1500, "paced at about 2 s");
    assert.ok(second.uptime > first.uptime);

    polling.close();
    const total = (type, subType) =>
      events.filter((e) => e.type === type && (!subType || e.subType === subType)).reduce((a, e) => a + e.count, 0);
    await until(admin, "server_stats", () => total("rawDisconnection", "transport close") >= 1, 10000);
    assert.ok(total("rawConnection") >= 2, JSON.stringify(events));
    for (const type of ["packetsIn", "packetsOut", "bytesIn", "bytesOut"]) assert.ok(total(type) > 0, type);
    for (const e of events) {
      assert.equal(e.timestamp % 1000, 0, "rounded to the second");
      assert.ok(Math.abs(Date.now() - e.timestamp) < 30000);
    }
    await stats(admin, (s) => s.clientsCount === 2 && s.pollingClientsCount === 0);
  } finally {
    for (const s of sockets) s.close();
    await server.stop();
  }
});

test("commands: emit, join, leave and _disconnect act on chat clients; admin traffic is not chat traffic", async () => {
  const server = await startServer(SERVER, AUTH_FLAGS);
  const sockets = [];
  const chatEvents = async () =>
    (await get(server.url + "/metrics")).text
      .split("\n")
      .filter((l) => l.startsWith("hubbub_events_received_total"))
      .join("\n");
  try {
    const admin = await dashboard(server.url, { username: USER, password: PASSWORD });
    const a = await chat(server.url);
    const b = await chat(server.url);
    sockets.push(admin, a, b);
    const aGot = inbox(a);
    const bGot = inbox(b);
    const before = await chatEvents();

    // emit to the whole namespace.
    admin.emit("emit", "/", null, "messages", "to everyone");
    await Promise.all([message(a, "to everyone"), message(b, "to everyone")]);

    // join: a alone enters "vip"; an emit to "vip" reaches a only.
    admin.emit("join", "/", "vip", a.id);
    admin.emit("emit", "/", "vip", "messages", "vip only");
    admin.emit("emit", "/", null, "messages", "barrier 1");
    await Promise.all([message(a, "barrier 1"), message(b, "barrier 1")]);
    assert.ok(aGot.includes("vip only"));
    assert.ok(!bGot.includes("vip only"), "b is not in vip");

    // join for every socket of the namespace (MJOIN), leave for one.
    admin.emit("join", "/", "all");
    admin.emit("leave", "/", "all", a.id);
    admin.emit("emit", "/", "all", "messages", "all room");
    admin.emit("emit", "/", null, "messages", "barrier 2");
    await Promise.all([message(a, "barrier 2"), message(b, "barrier 2")]);
    assert.ok(bGot.includes("all room"));
    assert.ok(!aGot.includes("all room"), "a left 'all'");

    // Bad input is ignored and breaks nothing: unknown namespace, wrong types.
    admin.emit("emit", "/nope", null, "messages", "lost");
    admin.emit("join", "/", 42);
    admin.emit("_disconnect", "/", false, { not: "a room" });
    admin.emit("emit", "/", null, "messages", "barrier 3");
    await Promise.all([message(a, "barrier 3"), message(b, "barrier 3")]);
    assert.ok(a.connected && b.connected);
    assert.ok(!aGot.includes("lost"));

    // _disconnect one socket (namespace only), then the other's whole connection.
    const bGone = next(b, "disconnect");
    admin.emit("_disconnect", "/", false, b.id);
    assert.deepEqual(await bGone, ["io server disconnect", undefined]);
    const aGone = next(a, "disconnect");
    admin.emit("_disconnect", "/", true, a.id);
    const [reason] = await aGone;
    assert.ok(["transport close", "io server disconnect"].includes(reason), reason);
    assert.ok(admin.connected, "the dashboard stays connected");

    assert.equal(await chatEvents(), before, "admin commands are not counted as chat events");
  } finally {
    for (const s of sockets) s.close();
    await server.stop();
  }
});

test("read-only: only aggregated views are offered and commands are ignored", async () => {
  const server = await startServer(SERVER, [...AUTH_FLAGS, "--admin-readonly"]);
  const sockets = [];
  try {
    const admin = await dashboard(server.url, { username: USER, password: PASSWORD });
    const a = await chat(server.url);
    sockets.push(admin, a);
    await until(admin, "config", () => admin.got.config.length === 1);
    assert.deepEqual(admin.got.config[0], [{ supportedFeatures: ["AGGREGATED_EVENTS"] }]);
    const got = inbox(a);
    admin.emit("_disconnect", "/", true, a.id);
    admin.emit("emit", "/", null, "messages", "should not arrive");
    admin.emit("join", "/", "vip", a.id);
    // The next stats are computed after the commands were handled (one connection, in order).
    const s = await stats(admin, () => true);
    assert.equal(s.namespaces.find((n) => n.name === "/").socketsCount, 1);
    assert.ok(a.connected);
    assert.ok(!got.includes("should not arrive"), JSON.stringify(got));
  } finally {
    for (const s of sockets) s.close();
    await server.stop();
  }
});

test("development mode: all_sockets and every socket event, in the UI's shapes", async () => {
  const server = await startServer(SERVER, [...AUTH_FLAGS, "--admin-mode", "development"]);
  const sockets = [];
  try {
    const early = await chat(server.url, { query: { room: "lobby" } });
    sockets.push(early);
    const admin = await dashboard(server.url, { username: USER, password: PASSWORD });
    sockets.push(admin);
    await until(admin, "config", () => admin.got.config.length === 1);
    assert.deepEqual(admin.got.config[0][0].supportedFeatures, [...ALL_COMMANDS, "AGGREGATED_EVENTS", "ALL_EVENTS"]);
    await until(admin, "all_sockets", () => admin.got.all_sockets.length === 1);
    const all = admin.got.all_sockets[0][0];
    const mine = all.find((s) => s.id === early.id);
    assert.ok(mine, JSON.stringify(all));
    assert.equal(mine.nsp, "/");
    assert.equal(mine.transport, "websocket");
    assert.equal(mine.clientId.length, 12);
    assert.deepEqual(mine.rooms, [early.id]);
    assert.deepEqual(mine.data, {});
    assert.equal(mine.handshake.address, "127.0.0.1");
    assert.equal(mine.handshake.query.room, "lobby");
    assert.equal(mine.handshake.headers.host, `127.0.0.1:${server.port}`);
    assert.equal(typeof mine.handshake.time, "string");
    assert.ok(!("auth" in mine.handshake), "the CONNECT payload is never shown");
    assert.ok(all.some((s) => s.nsp === "/admin" && s.id === admin.id), "the dashboard's own socket too");

    const ev = admin.got.events;
    const c = await chat(server.url);
    sockets.push(c);
    await until(admin, "socket_connected", () => ev.some(([e, s]) => e === "socket_connected" && s.id === c.id));
    const [, connected, ts] = ev.find(([e, s]) => e === "socket_connected" && s.id === c.id);
    assert.equal(connected.nsp, "/");
    assert.match(ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // The welcome message the server emitted to c.
    await until(admin, "event_sent", () => ev.some(([e, , id]) => e === "event_sent" && id === c.id));
    const [, , , sent] = ev.find(([e, , id]) => e === "event_sent" && id === c.id);
    assert.deepEqual(sent, ["messages", { hello: "Hello World" }]);

    await c.emitWithAck("join", "dev");
    await until(admin, "event_received", () =>
      ev.some(([e, nsp, id, args]) => e === "event_received" && nsp === "/" && id === c.id && args[0] === "join"),
    );
    const [, , , received] = ev.find(([e, , id, args]) => e === "event_received" && id === c.id && args[0] === "join");
    assert.deepEqual(received, ["join", "dev"]);
    // The chat keeps the nickname in socket.data: the UI is told, as the Node package's
    // socket.data proxy tells it, and a dashboard connecting later lists it.
    await until(admin, "socket_updated", () => ev.some(([e, u]) => e === "socket_updated" && u.id === c.id && u.data));
    const [, updated] = ev.find(([e, u]) => e === "socket_updated" && u.id === c.id && u.data);
    assert.deepEqual(updated, { id: c.id, nsp: "/", data: { name: "dev" } });
    const later = await dashboard(server.url, { username: USER, password: PASSWORD });
    sockets.push(later);
    await until(later, "all_sockets", () => later.got.all_sockets.length === 1);
    const listed = later.got.all_sockets[0][0].find((s) => s.id === c.id);
    assert.deepEqual(listed.data, { name: "dev" });
    assert.deepEqual(later.got.all_sockets[0][0].find((s) => s.id === early.id).data, {}, "no join, no data");

    admin.emit("join", "/", "vip", c.id);
    await until(admin, "room_joined", () => ev.some(([e, , room, id]) => e === "room_joined" && room === "vip" && id === c.id));
    admin.emit("leave", "/", "vip", c.id);
    await until(admin, "room_left", () => ev.some(([e, , room, id]) => e === "room_left" && room === "vip" && id === c.id));

    const cid = c.id; // the client forgets its id once disconnected
    c.disconnect();
    await until(admin, "socket_disconnected", () =>
      ev.some(([e, nsp, id]) => e === "socket_disconnected" && nsp === "/" && id === cid),
    );
    const [, , , reason, when] = ev.find(([e, , id]) => e === "socket_disconnected" && id === cid);
    assert.equal(reason, "client namespace disconnect");
    assert.match(when, /Z$/);
    assert.ok(!ev.some(([e, nsp]) => (e === "event_received" || e === "event_sent") && nsp === "/admin"));
  } finally {
    for (const s of sockets) s.close();
    await server.stop();
  }
});

test("development mode: socket_updated with transport websocket when a polling client upgrades", async () => {
  const server = await startServer(SERVER, [...AUTH_FLAGS, "--admin-mode", "development"]);
  const sockets = [];
  try {
    const admin = await dashboard(server.url, { username: USER, password: PASSWORD });
    sockets.push(admin);
    await until(admin, "all_sockets", () => admin.got.all_sockets.length === 1);
    const ev = admin.got.events;
    // The official client's default: polling first, then the WebSocket probe and upgrade.
    const c = await connect(server.url, { transports: ["polling", "websocket"] }, (s) => {
      s.upgraded = new Promise((resolve) => s.io.on("open", () => s.io.engine.once("upgrade", resolve)));
    });
    sockets.push(c);
    await c.upgraded;
    assert.equal(c.io.engine.transport.name, "websocket");
    await until(admin, "socket_connected", () => ev.some(([e, s]) => e === "socket_connected" && s.id === c.id));
    const [, connected] = ev.find(([e, s]) => e === "socket_connected" && s.id === c.id);
    assert.equal(connected.transport, "polling", "the CONNECT arrived over polling, before the upgrade");
    await until(admin, "socket_updated", () =>
      ev.some(([e, u]) => e === "socket_updated" && u.id === c.id && u.transport),
    );
    const updates = ev.filter(([e, u]) => e === "socket_updated" && u.id === c.id && u.transport);
    assert.deepEqual(updates, [["socket_updated", { id: c.id, nsp: "/", transport: "websocket" }]]);
    // A dashboard connecting now lists the socket on its new transport.
    const later = await dashboard(server.url, { username: USER, password: PASSWORD });
    sockets.push(later);
    await until(later, "all_sockets", () => later.got.all_sockets.length === 1);
    assert.equal(later.got.all_sockets[0][0].find((s) => s.id === c.id).transport, "websocket");
  } finally {
    for (const s of sockets) s.close();
    await server.stop();
  }
});

test("browser origins: the chat page's own origin is refused; an origin listed in --cors-origins works with credentials", async () => {
  const ui = "https://admin.socket.io";
  const server = await startServer(SERVER, [...AUTH_FLAGS, "--cors-origins", ui]);
  const sockets = [];
  try {
    await assert.rejects(
      dashboard(server.url, { username: USER, password: PASSWORD }, { transports: ["polling"], extraHeaders: { origin: server.url } }),
      { message: "origin not allowed" },
    );
    const admin = await dashboard(
      server.url,
      { username: USER, password: PASSWORD },
      { transports: ["polling"], extraHeaders: { origin: ui } },
    );
    sockets.push(admin);
    await until(admin, "config", () => admin.got.config.length === 1);
    const res = await fetch(server.url + "/socket.io/?EIO=4&transport=polling", { headers: { origin: ui } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), ui);
    assert.equal(res.headers.get("access-control-allow-credentials"), "true");
  } finally {
    for (const s of sockets) s.close();
    await server.stop();
  }
});

// ---- two replicas on a real redis-server ----

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A private redis-server on a free loopback port, without persistence. */
async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "hubbub-admin-redis-"));
  const proc = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("redis-server did not start:\n" + out)), 10000);
    proc.on("error", (e) =>
      reject(new Error(`cannot run redis-server (${e.message}); install it: apt-get install redis-server`)),
    );
    proc.stdout.setEncoding("utf8");
    proc.stdout.on("data", (c) => {
      out += c;
      if (out.includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      proc.kill("SIGTERM");
      await once(proc, "exit");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves once `url`'s /readyz answers 200 (Redis connected and subscribed). */
async function ready(url) {
  for (let i = 0; i < 100; i++) {
    if ((await get(url + "/readyz")).status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(url + " never became ready");
}

test("two replicas on Redis: stats from both server ids, commands reach the other replica, sessions work on both", async () => {
  const redis = await startRedis();
  const flags = [...AUTH_FLAGS, "--redis-url", redis.url];
  const one = await startServer(SERVER, flags);
  const two = await startServer(SERVER, flags);
  const sockets = [];
  try {
    await Promise.all([ready(one.url), ready(two.url)]);
    const admin = await dashboard(one.url, { username: USER, password: PASSWORD });
    sockets.push(admin);
    const ids = new Set();
    admin.on("server_stats", (s) => ids.add(s.serverId));
    await until(admin, "server_stats", () => ids.size === 2, 10000);
    assert.deepEqual(
      [...ids].sort(),
      [`${os.hostname()}#${one.proc.pid}`, `${os.hostname()}#${two.proc.pid}`].sort(),
    );

    const remote = await chat(two.url);
    sockets.push(remote);
    const got = inbox(remote);
    // The join is a request to the other replica and the emit a broadcast: both are
    // published in order on one connection and handled in order by replica two.
    admin.emit("join", "/", "far", remote.id);
    admin.emit("emit", "/", "far", "messages", "far room");
    await message(remote, "far room", 10000);
    assert.equal(got.filter((m) => m === "far room").length, 1);

    const gone = next(remote, "disconnect", 10000);
    admin.emit("_disconnect", "/", false, remote.id);
    assert.deepEqual(await gone, ["io server disconnect", undefined]);

    // The session id issued by replica one opens the dashboard on replica two.
    await until(admin, "session", () => admin.got.session.length === 1);
    const [sessionId] = admin.got.session[0];
    const onTwo = await dashboard(two.url, { sessionId });
    sockets.push(onTwo);
    await until(onTwo, "config", () => onTwo.got.config.length === 1);
  } finally {
    for (const s of sockets) s.close();
    await Promise.all([one.stop(), two.stop()]);
    await redis.stop();
  }
});

test("two replicas on Redis, development mode: the other replica's sockets in full (handshake, transport, data, rooms) and its socket_updated", async () => {
  const redis = await startRedis();
  const flags = [...AUTH_FLAGS, "--admin-mode", "development", "--redis-url", redis.url];
  const one = await startServer(SERVER, flags);
  const two = await startServer(SERVER, flags);
  const sockets = [];
  try {
    await Promise.all([ready(one.url), ready(two.url)]);
    const admin = await dashboard(one.url, { username: USER, password: PASSWORD });
    sockets.push(admin);
    await until(admin, "all_sockets", () => admin.got.all_sockets.length === 1);
    const ev = admin.got.events;

    // A chat client on replica two: polling, then the upgrade, then a join.
    const remote = await connect(
      two.url,
      { transports: ["polling", "websocket"], query: { room: "far" }, extraHeaders: { "x-test": "two" } },
      (s) => {
        s.upgraded = new Promise((resolve) => s.io.on("open", () => s.io.engine.once("upgrade", resolve)));
      },
    );
    sockets.push(remote);
    await remote.upgraded;
    // Replica two's reports reach the dashboard on replica one through Redis.
    await until(admin, "socket_updated", () =>
      ev.some(([e, u]) => e === "socket_updated" && u.id === remote.id && u.transport === "websocket"),
      10000,
    );
    await remote.emitWithAck("join", "faraway");
    await until(admin, "socket_updated", () =>
      ev.some(([e, u]) => e === "socket_updated" && u.id === remote.id && u.data?.name === "faraway"),
      10000,
    );
    admin.emit("join", "/", "vip", remote.id);
    await until(admin, "room_joined", () => ev.some(([e, , room, id]) => e === "room_joined" && room === "vip" && id === remote.id), 10000);

    // A dashboard opening on replica one now lists the socket of replica two like a local one.
    const later = await dashboard(one.url, { username: USER, password: PASSWORD });
    sockets.push(later);
    await until(later, "all_sockets", () => later.got.all_sockets.length === 1, 10000);
    const all = later.got.all_sockets[0][0];
    const far = all.find((s) => s.id === remote.id);
    assert.ok(far, JSON.stringify(all));
    assert.equal(far.nsp, "/");
    assert.equal(far.transport, "websocket");
    assert.equal(typeof far.clientId, "string");
    assert.equal(far.clientId.length, 12);
    assert.deepEqual(far.data, { name: "faraway" }, "the application's data, without the _admin field");
    assert.deepEqual([...far.rooms].sort(), [remote.id, "vip"].sort());
    assert.equal(far.handshake.address, "127.0.0.1");
    assert.equal(far.handshake.headers.host, `127.0.0.1:${two.port}`);
    assert.equal(far.handshake.headers["x-test"], "two");
    assert.equal(far.handshake.query.room, "far");
    assert.equal(far.handshake.query.transport, "polling", "the handshake request was a polling one");
    assert.match(far.handshake.time, /^\d{4}-\d\d-\d\dT/);
    assert.equal(typeof far.handshake.issued, "number");
    assert.ok(far.handshake.issued > 0);
    assert.equal(far.handshake.url.startsWith("/socket.io/"), true);
    assert.ok(!("auth" in far.handshake), "the CONNECT payload is never shown");
    // The same fields as a socket of replica one serializes with.
    const near = all.find((s) => s.id === later.id);
    assert.deepEqual(Object.keys(far).sort(), Object.keys(near).sort());
    assert.deepEqual(Object.keys(far.handshake).sort(), Object.keys(near.handshake).sort());
  } finally {
    for (const s of sockets) s.close();
    await Promise.all([one.stop(), two.stop()]);
    await redis.stop();
  }
});
