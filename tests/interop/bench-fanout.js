// Two-replica fan-out benchmark client (run by bench-fanout.sh): N receivers spread over the
// given hubbub URLs, one sender on the first URL emitting `sendToAll("bench", seq, sentAt)`
// at a steady rate. Every receiver records the latency of every message; the sender's own
// replica delivers locally, the other replica receives through Redis.
// Usage: node bench-fanout.js <url,url> <receivers> <messages> <rate per s>
"use strict";
const { performance } = require("perf_hooks");
const ioc = require("socket.io-client");

const [urlsArg, receiversArg = "100", messagesArg = "2000", rateArg = "500"] = process.argv.slice(2);
const urls = urlsArg.split(",");
const receivers = Number(receiversArg);
const messages = Number(messagesArg);
const rate = Number(rateArg);

function connect(url) {
  return new Promise((resolve, reject) => {
    const s = ioc(url, { transports: ["websocket"], reconnection: false, forceNew: true });
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main() {
  const lat = urls.map(() => []);
  let delivered = 0;
  const expected = receivers * messages;
  let done;
  const finished = new Promise((r) => (done = r));
  const socks = [];
  for (let i = 0; i < receivers; i++) {
    const r = i % urls.length;
    const s = await connect(urls[r]);
    s.on("messages", (tag, seq, sentAt) => {
      if (tag !== "bench") return;
      lat[r].push(performance.now() - sentAt);
      delivered += 1;
      if (delivered === expected) done();
    });
    socks.push(s);
  }
  const sender = await connect(urls[0]);
  const start = performance.now();
  let seq = 0;
  const perTick = Math.max(1, Math.round(rate / 100));
  const timer = setInterval(() => {
    for (let k = 0; k < perTick && seq < messages; k++) {
      sender.emit("sendToAll", "bench", seq++, performance.now());
    }
    if (seq >= messages) clearInterval(timer);
  }, 10);
  const timeout = setTimeout(done, 60000);
  await finished;
  clearTimeout(timeout);
  const elapsed = (performance.now() - start) / 1000;
  const result = { receivers, messages, rate, delivered, expected, seconds: +elapsed.toFixed(2),
    deliveriesPerSecond: Math.round(delivered / elapsed) };
  urls.forEach((u, r) => {
    const s = lat[r].sort((a, b) => a - b);
    result[r === 0 ? "senderReplicaMs" : `replica${r}ViaRedisMs`] = {
      count: s.length,
      p50: +pct(s, 50).toFixed(2), p90: +pct(s, 90).toFixed(2),
      p99: +pct(s, 99).toFixed(2), max: +s[s.length - 1].toFixed(2),
    };
  });
  console.log(JSON.stringify(result, null, 2));
  socks.forEach((s) => s.close());
  sender.close();
  process.exit(delivered === expected ? 0 : 1);
}
main().catch((e) => { console.error(e); process.exit(1); });
