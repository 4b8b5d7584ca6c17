// A scriptable Node.js peer for hubbub's Redis tests (tests/redis_*.rs): official
// socket.io-client connections, and optionally a Node socket.io 4.x server with the official
// @socket.io/redis-adapter and an @socket.io/redis-emitter, all on one Redis — or, given
// `clusterNodes`, with `createShardedAdapter` on a Redis Cluster (no emitter).
//
// Protocol: one JSON object per line. Commands on stdin carry a `seq`; the reply is
// {"re": seq, ...}. Everything a client receives is reported as
// {"ev": "event", "id": <client>, "name": <event>, "args": [...]}, plus "connect",
// "disconnect" and "failover" notices.
"use strict";

const readline = require("readline");
const http = require("http");
const ioc = require("socket.io-client");

const clients = new Map();
let node = null; // { io, httpServer, pub, sub }
let emitter = null;

// Binary values cross the JSON line protocol as {"$bin": [bytes]}.
function toWire(v) {
  if (Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
    return { $bin: [...Buffer.from(v)] };
  }
  if (Array.isArray(v)) return v.map(toWire);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toWire(x)]));
  }
  return v;
}

function fromWire(v) {
  if (Array.isArray(v)) return v.map(fromWire);
  if (v && typeof v === "object") {
    if (Array.isArray(v.$bin)) return Buffer.from(v.$bin);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromWire(x)]));
  }
  return v;
}

function out(obj) {
  process.stdout.write(JSON.stringify(toWire(obj)) + "\n");
}

function attach(id, socket, spec) {
  socket.onAny((name, ...args) => {
    // Connection state recovery (on by default in hubbub): an event ends with its offset, a
    // string. Reported without it, as the application emitted the event.
    if (socket._pid && typeof args[args.length - 1] === "string") args.pop();
    out({ ev: "event", id, name, args });
  });
  // Answers acked broadcasts (a server's `timeout().emit("ack-me", .., cb)`).
  socket.on("ack-me", (arg, cb) => typeof cb === "function" && cb({ from: id, got: arg }));
  socket.on("disconnect", (reason) => {
    out({ ev: "disconnect", id, reason });
    // Failover: like a load balancer sending the reconnection to another replica.
    const next = spec.failover && spec.failover.shift();
    if (next && !spec.closed) {
      const s = ioc(next, { transports: ["websocket"], reconnection: false, forceNew: true });
      attach(id, s, spec);
      s.on("connect", () => {
        clients.set(id, s);
        const done = () => out({ ev: "failover", id, url: next, sid: s.id });
        if (spec.rejoin) s.emit("join", spec.rejoin, done);
        else done();
      });
    }
  });
}

function connect(cmd) {
  return new Promise((resolve) => {
    const spec = { failover: cmd.failover || [], rejoin: cmd.rejoin, closed: false };
    const socket = ioc(cmd.url, {
      transports: cmd.transports || ["websocket"],
      reconnection: Boolean(cmd.reconnection),
      // Quick retries for the tests that kill a replica (the client's default starts at 1 s).
      reconnectionDelay: 100,
      reconnectionDelayMax: 500,
      forceNew: true,
      auth: cmd.auth || {},
    });
    attach(cmd.id, socket, spec);
    // Engine.IO notices: the upgrade to WebSocket, and a reconnection (a new session).
    const watchEngine = () =>
      socket.io.engine.on("upgrade", (t) => out({ ev: "upgrade", id: cmd.id, transport: t.name }));
    socket.io.on("open", watchEngine);
    socket.io.on("reconnect", () =>
      out({ ev: "reconnect", id: cmd.id, sid: socket.id, engineId: socket.io.engine.id }),
    );
    socket.spec = spec;
    clients.set(cmd.id, socket);
    socket.once("connect", () => {
      out({ ev: "connect", id: cmd.id, sid: socket.id });
      resolve({ ok: true, sid: socket.id });
    });
    socket.once("connect_error", (e) => resolve({ ok: false, error: String(e && e.message) }));
  });
}

async function startNode(cmd) {
  const { Server } = require("socket.io");
  const { createAdapter, createShardedAdapter } = require("@socket.io/redis-adapter");
  const { createClient, createCluster } = require("redis");
  let pub;
  if (cmd.clusterNodes) {
    // A Redis Cluster: the sharded adapter (SPUBLISH/SSUBSCRIBE) with node-redis's cluster client.
    pub = createCluster({ rootNodes: cmd.clusterNodes.map((url) => ({ url })) });
  } else {
    pub = createClient({ url: cmd.redisUrl });
  }
  pub.on("error", () => {});
  const sub = pub.duplicate();
  sub.on("error", () => {});
  await Promise.all([pub.connect(), sub.connect()]);
  const adapter = cmd.clusterNodes
    ? createShardedAdapter(pub, sub, { subscriptionMode: cmd.subscriptionMode || "dynamic" })
    : createAdapter(pub, sub);
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter });
  io.on("connection", (socket) => {
    socket.join("node-room");
    socket.onAny((name, ...args) => {
      // The tutorial's raw broadcast, like hubbub's sendToAll.
      if (name === "sendToAll") socket.broadcast.emit("messages", ...args);
    });
  });
  io.on("ping-servers", (n, cb) => cb && cb(`node-pong-${n}`));
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  node = { io, httpServer, pub, sub };
  if (cmd.clusterNodes) return { ok: true, port: httpServer.address().port };
  const { Emitter } = require("@socket.io/redis-emitter");
  const ec = createClient({ url: cmd.redisUrl });
  ec.on("error", () => {});
  await ec.connect();
  emitter = new Emitter(ec);
  return { ok: true, port: httpServer.address().port };
}

function target(op, cmd) {
  let t = op;
  if (cmd.room) t = t.to(cmd.room);
  if (cmd.except) t = t.except(cmd.except);
  return t;
}

async function handle(cmd) {
  switch (cmd.op) {
    case "connect":
      return connect(cmd);
    case "emit": {
      const socket = clients.get(cmd.id);
      if (!socket) return { ok: false, error: "no such client" };
      if (!cmd.ack) {
        socket.emit(cmd.event, ...(cmd.args || []));
        return { ok: true };
      }
      try {
        const ack = await socket.timeout(cmd.timeoutMs || 5000).emitWithAck(cmd.event, ...(cmd.args || []));
        return { ok: true, ack };
      } catch (e) {
        return { ok: false, error: String(e && e.message) };
      }
    }
    case "engine": {
      // The Engine.IO session id and the transport in use now.
      const socket = clients.get(cmd.id);
      if (!socket || !socket.io.engine) return { ok: false, error: "no such client" };
      return { ok: true, engineId: socket.io.engine.id, transport: socket.io.engine.transport.name };
    }
    case "close": {
      const socket = clients.get(cmd.id);
      if (socket) {
        socket.spec.closed = true;
        socket.close();
      }
      return { ok: true };
    }
    case "nodeServer":
      return startNode(cmd);
    case "nodeEmit":
      target(node.io, cmd).emit(cmd.event, ...(cmd.args || []));
      return { ok: true };
    case "nodeEmitWithAck": {
      const started = Date.now();
      try {
        const responses = await target(node.io, cmd).timeout(cmd.timeoutMs || 4000).emitWithAck(cmd.event, ...(cmd.args || []));
        return { ok: true, ms: Date.now() - started, responses };
      } catch (e) {
        return { ok: false, ms: Date.now() - started, error: String(e && e.message) };
      }
    }
    case "nodeFetchSockets": {
      const started = Date.now();
      try {
        const sockets = await target(node.io, cmd).fetchSockets();
        return {
          ok: true,
          ms: Date.now() - started,
          sockets: sockets.map((s) => ({
            id: s.id,
            rooms: [...s.rooms],
            auth: s.handshake && s.handshake.auth,
            handshake: s.handshake,
            data: s.data,
          })),
        };
      } catch (e) {
        return { ok: false, ms: Date.now() - started, error: String(e && e.message) };
      }
    }
    case "nodeAllRooms": {
      const started = Date.now();
      try {
        const rooms = await node.io.of("/").adapter.allRooms();
        return { ok: true, ms: Date.now() - started, rooms: [...rooms] };
      } catch (e) {
        return { ok: false, ms: Date.now() - started, error: String(e && e.message) };
      }
    }
    case "nodeServerSideEmitWithAck": {
      const started = Date.now();
      try {
        const responses = await node.io.serverSideEmitWithAck(cmd.event, ...(cmd.args || []));
        return { ok: true, ms: Date.now() - started, responses };
      } catch (e) {
        return { ok: false, ms: Date.now() - started, error: String(e && e.message) };
      }
    }
    case "nodeSocketsJoin":
      target(node.io, cmd).socketsJoin(cmd.rooms);
      return { ok: true };
    case "nodeServerCount":
      return { ok: true, count: await node.io.of("/").adapter.serverCount() };
    case "emitterEmit":
      await target(emitter, cmd).emit(cmd.event, ...(cmd.args || []));
      return { ok: true };
    default:
      return { ok: false, error: `unknown op ${cmd.op}` };
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let cmd;
  try {
    cmd = fromWire(JSON.parse(line));
  } catch (e) {
    out({ ev: "error", error: `bad command: ${line}` });
    return;
  }
  handle(cmd).then(
    (reply) => out(Object.assign({ re: cmd.seq }, reply)),
    (e) => out({ re: cmd.seq, ok: false, error: String(e && e.stack) }),
  );
});
rl.on("close", () => process.exit(0));
