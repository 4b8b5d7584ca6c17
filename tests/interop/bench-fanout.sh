#!/usr/bin/env bash
# Two-replica fan-out through a local Redis (a benchmark, not a test):
#   tests/interop/bench-fanout.sh [receivers] [messages] [rate/s]
# Starts redis-server and two hubbub-server replicas on free loopback ports (the binary from
# HUBBUB_BIN, else target/release, else target/debug), runs bench-fanout.js, prints JSON:
# deliveries per second and latency percentiles for the sender's replica and the other one.
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
rport=$(free_port); p1=$(free_port); p2=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null & pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
for p in "$p1" "$p2"; do
  HUBBUB_LOG=warn "$bin" --bind "127.0.0.1:$p" --redis-url "redis://127.0.0.1:$rport" \
    --rate-limit 100000 --rate-burst 1000000 --outbound-queue 100000 >/dev/null 2>&1 & pids+=($!)
done
for p in "$p1" "$p2"; do
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/readyz")" = 200 ]; do sleep 0.05; done
done
echo "binary: $bin" >&2
node tests/interop/bench-fanout.js "http://127.0.0.1:$p1,http://127.0.0.1:$p2" "${1:-100}" "${2:-2000}" "${3:-500}"
