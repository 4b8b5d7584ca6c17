#!/usr/bin/env bash
# Two-replica fan-out through a local Redis (a benchmark, not a test):
#   tests/interop/bench-fanout.sh [receivers] [messages] [rate/s]
#   BENCH_REDIS=cluster tests/interop/bench-fanout.sh ...   # through a 3-shard Redis Cluster
# Starts redis-server (or three cluster-mode nodes, one shard each, no replicas) and two
# hubbub-server replicas on free loopback ports (the binary from HUBBUB_BIN, else
# target/release, else target/debug), runs bench-fanout.js, prints JSON: deliveries per
# second and latency percentiles for the sender's replica and the other one. With the
# cluster, it then prints to stderr how many PUBLISH/SPUBLISH each shard served.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
ensure_apt redis-server redis-server
ensure_npm tests/interop
bin=${HUBBUB_BIN:-}
[ -z "$bin" ] && [ -x target/release/hubbub-server ] && bin=target/release/hubbub-server
[ -z "$bin" ] && bin=target/debug/hubbub-server
[ -x "$bin" ] || { echo "error: build hubbub-server first (cargo build)" >&2; exit 1; }
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
p1=$(free_port); p2=$(free_port)
pids=()
data=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"' EXIT
if [ "${BENCH_REDIS:-single}" = cluster ]; then
  shards=()
  for _ in 1 2 3; do
    port=$(free_port); bus=$(free_port)
    mkdir -p "$data/$port"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$data/$port" \
      --cluster-enabled yes --cluster-config-file "$data/$port/nodes.conf" --cluster-port "$bus" \
      >/dev/null & pids+=($!)
    shards+=("$port")
  done
  for port in "${shards[@]}"; do
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
  done
  redis-cli --cluster create "${shards[@]/#/127.0.0.1:}" --cluster-yes >/dev/null
  until redis-cli -p "${shards[0]}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
  redis_args=(--redis-cluster-nodes "127.0.0.1:${shards[0]},127.0.0.1:${shards[1]}")
else
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$data" >/dev/null & pids+=($!)
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
  redis_args=(--redis-url "redis://127.0.0.1:$rport")
fi
for p in "$p1" "$p2"; do
  HUBBUB_LOG=warn "$bin" --bind "127.0.0.1:$p" "${redis_args[@]}" \
    --rate-limit 100000 --rate-burst 1000000 --outbound-queue 100000 >/dev/null 2>&1 & pids+=($!)
done
for p in "$p1" "$p2"; do
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/readyz")" = 200 ]; do sleep 0.05; done
done
echo "binary: $bin; redis: ${BENCH_REDIS:-single}" >&2
node tests/interop/bench-fanout.js "http://127.0.0.1:$p1,http://127.0.0.1:$p2" "${1:-100}" "${2:-2000}" "${3:-500}"
if [ "${BENCH_REDIS:-single}" = cluster ]; then
  for port in "${shards[@]}"; do
    slots=$(redis-cli -p "$port" cluster nodes | awk '/myself/ {print $9}')
    stats=$(redis-cli -p "$port" info commandstats | { grep -E '^cmdstat_(s?publish):' || true; } | cut -d, -f1 | tr '\n' ' ')
    echo "shard 127.0.0.1:$port (slots $slots): ${stats:-no publishes}" >&2
  done
fi
