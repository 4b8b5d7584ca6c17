// Captures the exact bytes that the official Node.js `@socket.io/redis-adapter` and
// `@socket.io/redis-emitter` PUBLISH to Redis, so that hubbub's MessagePack/JSON codec
// (src/cluster/wire.rs) is unit-tested against the real thing.
//
// Usage: node capture-fixtures.js <redis-port> <out-dir>
// (run through capture-fixtures.sh, which starts a throw-away redis-server on a free port).
//
// Two socket.io servers, A and B, share the Redis through the adapter; one client is
// connected to each. A recorder connection PSUBSCRIBEs to `*` (buffer mode) and writes every
// published payload to <out-dir>/NN-<scenario>-<k>.bin, with <out-dir>/manifest.json listing
// scenario, channel and file for each. Scenarios are framed by marker messages published on
// A's own publishing connection, so every payload is attributed to the scenario that caused it.
"use strict";

const fs = require("fs");
const path = require("path");
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");
const ioc = require("socket.io-client");

const [redisPort, outDir] = process.argv.slice(2);
if (!redisPort || !outDir) {
  console.error("usage: node capture-fixtures.js <redis-port> <out-dir>");
  process.exit(2);
}
const redisUrl = `redis://127.0.0.1:${redisPort}`;
const MARKER = "capture-marker";

async function redisClient() {
  const c = createClient({ url: redisUrl });
  c.on("error", (e) => console.error("redis error", e));
  await c.connect();
  return c;
}

async function startServer(name) {
  const pub = await redisClient();
  const sub = pub.duplicate();
  sub.on("error", (e) => console.error("redis error", e));
  await sub.connect();
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
  io.on("connection", (socket) => {
    socket.join("room1");
    socket.data = { server: name, nick: `nick-${name}` };
  });
  io.of("/admin"); // a second namespace, so that it has an adapter on both servers
  await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  return { io, pub, sub, httpServer, port: httpServer.address().port };
}

function connectClient(port, name) {
  return new Promise((resolve, reject) => {
    const socket = ioc(`http://127.0.0.1:${port}`, {
      transports: ["websocket"],
      auth: { token: `token-${name}` },
      query: { who: name },
    });
    socket.on("ack-me", (arg, cb) => cb({ from: name, got: arg }));
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", reject);
  });
}

async function main() {
  fs.mkdirSync(outDir, { recursive: true });
  const recorder = await redisClient();
  const manifest = [];
  let scenario = null;
  let counter = 0;
  let waitingFor = null;
  await recorder.pSubscribe(
    "*",
    (message, channel) => {
      channel = channel.toString();
      if (channel === MARKER) {
        const text = message.toString();
        if (waitingFor && text === waitingFor.token) {
          const done = waitingFor.resolve;
          waitingFor = null;
          done();
        }
        return;
      }
      if (!scenario) {
        throw new Error(`unexpected publish outside a scenario on ${channel}`);
      }
      const k = manifest.filter((m) => m.scenario === scenario.name).length;
      const file = `${String(scenario.index).padStart(2, "0")}-${scenario.name}-${k}.bin`;
      fs.writeFileSync(path.join(outDir, file), message);
      manifest.push({ scenario: scenario.name, channel, file });
    },
    true,
  );

  const A = await startServer("A");
  const B = await startServer("B");
  const clientA = await connectClient(A.port, "A");
  const clientB = await connectClient(B.port, "B");
  B.io.on("ping", (n, cb) => cb(`pong-${n}`));
  B.io.on("hello", () => {});
  const emitterClient = await redisClient();
  const emitter = new Emitter(emitterClient);
  const socketA = [...A.io.of("/").sockets.values()][0];

  // Runs `action`, then publishes an end marker on A's publishing connection (and, for
  // emitter scenarios, on the emitter's) and waits for it, so all payloads caused by the
  // action have been recorded before the next scenario starts.
  async function run(name, action, markerClient = A.pub) {
    counter += 1;
    scenario = { name, index: counter };
    await action();
    const token = `end-${name}`;
    const seen = new Promise((resolve) => (waitingFor = { token, resolve }));
    await markerClient.publish(MARKER, token);
    await seen;
    scenario = null;
  }

  await run("broadcast-all", async () => {
    A.io.emit("messages", { hello: "world" });
  });
  await run("broadcast-room", async () => {
    A.io.to("room1").emit("chat", "text", 42, -7, 3.5, true, false, null);
  });
  await run("broadcast-rooms-except", async () => {
    A.io.to(["r1", "r2"]).except("r3").emit("multi", [1, 2, 3]);
  });
  await run("broadcast-binary", async () => {
    A.io.emit("bin", Buffer.from([1, 2, 3]), { nested: Buffer.from("hi"), n: 1 });
  });
  await run("broadcast-flags", async () => {
    A.io.volatile.compress(false).emit("v", "x");
  });
  await run("socket-broadcast", async () => {
    socketA.broadcast.emit("from-socket", "hi");
  });
  await run("socket-to-room", async () => {
    socketA.to("room1").emit("to-room", { a: 1 });
  });
  await run("namespace", async () => {
    A.io.of("/admin").emit("adm", 1);
  });
  await run("wide-values", async () => {
    A.io.emit(
      "wide",
      "x".repeat(300),
      "h\u00e9llo \u{1F600}",
      2 ** 40,
      -(2 ** 40),
      255,
      65535,
      -129,
      -0.25,
      1e-7,
      { deep: { list: [null, { k: "v" }] } },
    );
  });
  await run("broadcast-with-ack", async () => {
    await new Promise((resolve, reject) =>
      A.io.timeout(5000).emit("ack-me", "ping", (err, responses) =>
        err ? reject(err) : resolve(responses),
      ),
    );
  });
  await run("fetch-sockets", async () => {
    const sockets = await A.io.fetchSockets();
    if (sockets.length !== 2) throw new Error(`fetchSockets: ${sockets.length}`);
  });
  await run("fetch-sockets-room", async () => {
    await A.io.in("room1").except("r3").fetchSockets();
  });
  await run("all-rooms", async () => {
    await A.io.of("/").adapter.allRooms();
  });
  await run("sockets-join", async () => {
    A.io.in("room1").socketsJoin(["r4", "r5"]);
  });
  await run("sockets-leave", async () => {
    A.io.socketsLeave("r4");
  });
  await run("disconnect-sockets", async () => {
    A.io.in("ghost").disconnectSockets(true);
  });
  await run("server-side-emit", async () => {
    A.io.serverSideEmit("hello", "world", 1);
  });
  await run("server-side-emit-ack", async () => {
    const responses = await A.io.serverSideEmitWithAck("ping", 1);
    if (responses[0] !== "pong-1") throw new Error(`serverSideEmitWithAck: ${responses}`);
  });
  await run(
    "emitter-broadcast",
    async () => {
      await emitter.emit("from-emitter", "e", 1);
    },
    emitterClient,
  );
  await run(
    "emitter-room",
    async () => {
      await emitter.to("room1").except("r3").emit("emitter-room", { x: true });
    },
    emitterClient,
  );
  await run(
    "emitter-namespace-volatile",
    async () => {
      await emitter.of("/admin").volatile.emit("adm", Buffer.from([0xff]));
    },
    emitterClient,
  );
  await run(
    "emitter-server-side-emit",
    async () => {
      emitter.serverSideEmit("srv", 1);
    },
    emitterClient,
  );
  await run(
    "emitter-sockets-join",
    async () => {
      emitter.in("room1").socketsJoin("r9");
    },
    emitterClient,
  );
  await run(
    "emitter-disconnect",
    async () => {
      emitter.in("ghost").disconnectSockets();
    },
    emitterClient,
  );

  fs.writeFileSync(path.join(outDir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  console.log(`captured ${manifest.length} payloads into ${outDir}`);
  clientA.close();
  clientB.close();
  A.io.close();
  B.io.close();
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
