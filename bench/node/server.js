// The socket.io 4.8 counterpart of hubbub's `sendToAll` for bench/compare.sh:
// every `sendToAll(...args)` is broadcast as `messages(...args)` to every
// other client. Usage: node server.js PORT [REDIS_URL]
// With REDIS_URL, replicas share broadcasts through @socket.io/redis-adapter.
const { createServer } = require("http");
const { Server } = require("socket.io");

async function main() {
  const port = Number(process.argv[2] || 3000);
  const redisUrl = process.argv[3];
  const httpServer = createServer();
  const io = new Server(httpServer, { transports: ["websocket", "polling"] });
  if (redisUrl) {
    const { createAdapter } = require("@socket.io/redis-adapter");
    const { createClient } = require("redis");
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  io.on("connection", (socket) => {
    socket.on("sendToAll", (...args) => socket.broadcast.emit("messages", ...args));
  });
  httpServer.listen(port, "127.0.0.1", () => {
    console.log(`socket.io listening on 127.0.0.1:${port}${redisUrl ? " with " + redisUrl : ""}`);
  });
}

process.on("SIGTERM", () => process.exit(0));
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
