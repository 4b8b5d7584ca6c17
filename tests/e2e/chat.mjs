// Chats across two hubbub replicas with the official socket.io-client, for run.sh.
// Usage: node chat.mjs URL_OF_POD_A URL_OF_POD_B
// A (WebSocket) and B (HTTP long-polling) join; A's message must reach B through the
// Redis adapter; a client joining B later must get it from the shared history.
import { io } from "socket.io-client";

const [urlA, urlB] = process.argv.slice(2);
if (!urlA || !urlB) {
  console.error("usage: node chat.mjs URL_A URL_B");
  process.exit(2);
}
const TIMEOUT_MS = 15000;

function connect(url, transports) {
  const socket = io(url, { transports, reconnection: false, timeout: TIMEOUT_MS });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(new Error(`connect ${url}: ${err.message}`)));
  });
}

function waitFor(socket, event, predicate, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT_MS);
    const handler = (...args) => {
      if (predicate(...args)) {
        clearTimeout(timer);
        socket.off(event, handler);
        resolve(args);
      }
    };
    socket.on(event, handler);
  });
}

async function main() {
  const text = `hello across replicas ${Date.now()}`;
  const a = await connect(urlA, ["websocket"]);
  const b = await connect(urlB, ["polling"]);
  const joinA = await a.timeout(TIMEOUT_MS).emitWithAck("join", "alice");
  const joinB = await b.timeout(TIMEOUT_MS).emitWithAck("join", "bob");
  if (!joinA.ok || !joinB.ok) throw new Error(`join failed: ${JSON.stringify([joinA, joinB])}`);

  const received = waitFor(b, "messages", (m) => m && m.name === "alice" && m.text === text, "alice's message on B");
  const ack = await a.timeout(TIMEOUT_MS).emitWithAck("messages", text);
  if (!ack.ok) throw new Error(`message refused: ${JSON.stringify(ack)}`);
  await received;
  console.log(`ok    B (polling, other pod) received A's message (websocket)`);

  const c = await connect(urlB, ["websocket"]);
  const history = waitFor(c, "messages", (m) => m && m.text === text, "the message in C's history");
  await c.timeout(TIMEOUT_MS).emitWithAck("join", "carol");
  await history;
  console.log(`ok    a later client on B got A's message from the shared history`);

  const who = await c.timeout(TIMEOUT_MS).emitWithAck("who");
  for (const name of ["alice", "bob", "carol"]) {
    if (!who.names.includes(name)) throw new Error(`who misses ${name}: ${JSON.stringify(who)}`);
  }
  console.log(`ok    presence spans both replicas: ${who.names.join(", ")}`);
  for (const s of [a, b, c]) s.close();
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`FAIL  ${err.message}`);
    process.exit(1);
  },
);
