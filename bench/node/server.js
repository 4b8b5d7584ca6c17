// The socket.io 4.8 counterpart of hubbub's `sendToAll` for bench/compare.sh:
// every `sendToAll(...args)` is broadcast as `messages(...args)` to every
// other client. Usage: node server.js PORT
const { createServer } = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 3000);
const httpServer = createServer();
const io = new Server(httpServer, { transports: ["websocket", "polling"] });
io.on("connection", (socket) => {
  socket.on("sendToAll", (...args) => socket.broadcast.emit("messages", ...args));
});
httpServer.listen(port, "127.0.0.1", () => {
  console.log(`socket.io listening on 127.0.0.1:${port}`);
});
process.on("SIGTERM", () => process.exit(0));
