// Summarises the JSON reports that bench/compare.sh leaves in a directory:
// medians per scenario and server, and the ratios hubbub / socketioxide and
// hubbub / socket.io (each server's runs of a scenario come from the same
// invocation, interleaved). For saturate, also the ratio of every repetition,
// hubbub against the peer run next to it.
// Usage: node bench/summary.js DIR
const fs = require("fs");
const path = require("path");

const dir = process.argv[2];
const runs = {}; // scenario -> server -> [report]
let failed = 0;
for (const file of fs.readdirSync(dir).sort()) {
  const m = file.match(/^(fanout-\d+(?:\.\d+)?|idle|saturate|budget\d+)-(socketioxide|socketio|hubbub)(-redis|-amqp|-cluster)?-(\d+)\.json$/);
  if (!m) continue;
  let report;
  try {
    report = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8"));
  } catch {
    failed += 1;
    continue;
  }
  report.rep = Number(m[4]);
  ((runs[m[1] + (m[3] ?? "")] ??= {})[m[2]] ??= []).push(report);
}

const median = (xs) => {
  const s = xs.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
const fmt = (x, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : "n/a");
const ratio = (h, s) => (Number.isFinite(h) && Number.isFinite(s) && s !== 0 ? fmt(h / s) + "x" : "n/a");

const fanoutMetrics = [
  ["deliveries/s", (r) => r.deliveries_per_sec, 0],
  ["loss %", (r) => r.loss_ratio * 100, 3],
  ["p50 ms", (r) => r.latency_ms.p50, 2],
  ["p90 ms", (r) => r.latency_ms.p90, 2],
  ["p99 ms", (r) => r.latency_ms.p99, 2],
  ["p99.9 ms", (r) => r.latency_ms.p999, 2],
  ["max ms", (r) => r.latency_ms.max, 2],
  ["server CPU s (send + drain)", (r) => r.server_cpu_secs, 2],
  ["server CPU µs per delivery", (r) => r.server_cpu_us_per_delivery, 2],
  ["load tool CPU s", (r) => r.client_cpu_secs, 2],
];
const idleMetrics = [
  ["established", (r) => r.established, 0],
  ["connects/s", (r) => r.connects_per_sec, 0],
  ["server bytes/connection", (r) => r.bytes_per_connection, 0],
  ["handshake p99 ms", (r) => r.latency_ms.p99, 2],
];

const saturateMetrics = [
  ["best deliveries/s (zero loss, p99 <= bound)", (r) => r.best?.deliveries_per_sec ?? 0, 0],
  ["at msg/s", (r) => r.best?.rate ?? 0, 0],
  ["p99 ms at best", (r) => r.best?.latency_ms.p99, 2],
  ["server CPU µs per delivery at best", (r) => r.best?.server_cpu_us_per_delivery, 2],
  ["lowest failing msg/s", (r) => {
      const failing = r.steps
        .filter((s) => s.loss !== 0 || s.latency_ms.p99 > r.p99_bound_ms)
        .map((s) => s.rate);
      return failing.length ? Math.min(...failing) : null;
    }, 0],
  ["steps run", (r) => r.steps.length, 0],
];

for (const scenario of Object.keys(runs).sort()) {
  const base = scenario.replace(/-(redis|amqp|cluster)$/, "");
  const where = scenario.endsWith("-redis")
    ? ", two replicas through Redis"
    : scenario.endsWith("-amqp")
      ? ", two hubbub replicas through RabbitMQ (no peer counterpart)"
      : scenario.endsWith("-cluster")
        ? ", two hubbub replicas through a three-shard Redis Cluster (no peer counterpart)"
        : ", one process";
  const budget = base.match(/^budget(\d+)$/)?.[1];
  const saturate = base === "saturate" || budget !== undefined;
  const metrics = base === "idle" ? idleMetrics : saturate ? saturateMetrics : fanoutMetrics;
  const title =
    (base === "idle"
      ? "idle connections"
      : base === "saturate"
        ? "saturate (p99 bound 50 ms)"
        : budget !== undefined
          ? `saturate (p99 bound 50 ms), every server held to ${budget} % of one core`
          : `fan-out at ${base.slice(7)} msg/s`) + where;
  const s = runs[scenario].socketio ?? [];
  const x = runs[scenario].socketioxide ?? [];
  const h = runs[scenario].hubbub ?? [];
  console.log(
    `\n### ${title} (runs: socket.io ${s.length}, socketioxide ${x.length}, hubbub ${h.length})\n`,
  );
  console.log("| metric (median) | socket.io 4.8 | socketioxide 0.18 | hubbub | hubbub / socketioxide | hubbub / socket.io |");
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const [name, get, digits] of metrics) {
    const sm = median(s.map(get));
    const xm = median(x.map(get));
    const hm = median(h.map(get));
    console.log(
      `| ${name} | ${fmt(sm, digits)} | ${fmt(xm, digits)} | ${fmt(hm, digits)} | ${ratio(hm, xm)} | ${ratio(hm, sm)} |`,
    );
  }
  if (saturate) {
    // The same repetition ran the servers one after the other: the ratio of
    // each pair says how stable the median ratio is.
    const best = (rs, rep) => rs.find((r) => r.rep === rep)?.best?.deliveries_per_sec ?? 0;
    const reps = [...new Set(h.map((r) => r.rep))].sort((a, b) => a - b);
    const per = (peer) => reps.map((rep) => ratio(best(h, rep), best(peer, rep))).join(" / ");
    if (x.length) console.log(`| ratio per repetition, hubbub / socketioxide | | | | ${per(x)} | |`);
    if (s.length) console.log(`| ratio per repetition, hubbub / socket.io | | | | | ${per(s)} |`);
  }
}
// How the cluster runs' publishes spread over the shards (PUBLISH and SPUBLISH per shard).
const shardFiles = fs.readdirSync(dir).filter((f) => /^shards-.*\.txt$/.test(f)).sort();
if (shardFiles.length) {
  console.log("\n### Redis Cluster: publishes per shard\n");
  for (const f of shardFiles) {
    console.log(`${f.replace(/\.txt$/, "")}:`);
    for (const line of fs.readFileSync(path.join(dir, f), "utf8").trim().split("\n")) console.log(`    ${line}`);
  }
}
if (failed) console.log(`\n${failed} run(s) failed and are not counted.`);
