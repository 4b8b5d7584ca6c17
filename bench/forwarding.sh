#!/usr/bin/env bash
# The cost of serving a long-polling session through a replica that does not own it
# (docs/forwarding.md): two hubbub-server replicas A and B on a fresh redis-server;
# `hubbub-bench polling` opens every session on A, then runs round trips (POST an
# acknowledged event, GET until the ack) either straight to A ("direct") or through B,
# which forwards each request to A ("forwarded"). Alternates the two RUNS times and
# prints the round-trip latency, the requests per second and the CPU time of both
# servers per request (from /proc).
#
# Usage: bench/forwarding.sh       (about RUNS x 2 x (DURATION + 2) s after the build)
# Settings (environment):
#   CLIENTS=20       polling clients looping at once
#   DURATION=10      seconds per run
#   RUNS=3           runs of each mode (alternating)
#   PIN=1            pin the servers to CPU 0 and the load tool to CPU 1 (taskset)
#   OUT=dir          where the JSON reports and logs go (default: a new temp dir)
#   PROFILE=release  cargo profile
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

CLIENTS=${CLIENTS:-20}
DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
PIN=${PIN:-1}
OUT=${OUT:-$(mktemp -d -t hubbub-forwarding.XXXXXX)}
PROFILE=${PROFILE:-release}
mkdir -p "$OUT"

ensure_apt curl curl
ensure_apt redis-server redis-server
echo "==> cargo build --profile $PROFILE -p hubbub-server -p hubbub-bench"
(cd "$root" && cargo build --profile "$PROFILE" --quiet -p hubbub-server -p hubbub-bench)
target_dir=$root/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
server_bin=$target_dir/hubbub-server
bench_bin=$target_dir/hubbub-bench
servers_on=() tool_on=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  servers_on=(taskset -c 0) tool_on=(taskset -c 1)
fi

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT

# wait_ready URL PID LOG: waits until URL answers 200 (at most 10 s); shows LOG if not.
wait_ready() {
  for _ in $(seq 1 100); do
    if curl -fs -o /dev/null "$1"; then return 0; fi
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "error: $1 did not become ready; $3:" >&2
  cat "$3" >&2
  return 1
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
server_pids=()
server_ports=()
for name in a b; do
  p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # The event of the round trip is refused without Redis; lift the rate limit so that
  # every round trip counts.
  "${servers_on[@]}" "$server_bin" --bind "127.0.0.1:$p" --redis-url "redis://127.0.0.1:$port" \
    --rate-limit 100000 --rate-burst 1000000 --log warn >"$OUT/server-$name.log" 2>&1 &
  pids+=("$!")
  server_pids+=("$!")
  server_ports+=("$p")
  wait_ready "http://127.0.0.1:$p/readyz" "$!" "$OUT/server-$name.log"
done
a=http://127.0.0.1:${server_ports[0]}
b=http://127.0.0.1:${server_ports[1]}
all_pids=$(IFS=,; echo "${server_pids[*]}")

echo "==> $CLIENTS polling clients, $DURATION s per run, $RUNS runs of each mode; reports in $OUT"
for run in $(seq 1 "$RUNS"); do
  for mode in direct forwarded; do
    via=$a
    [ "$mode" = forwarded ] && via=$b
    "${tool_on[@]}" "$bench_bin" --json polling --url "$a" --via "$via" --clients "$CLIENTS" \
      --duration "$DURATION" --pids "$all_pids" >"$OUT/$mode-$run.json"
  done
done
curl -fsS "$b/metrics" | grep -E '^hubbub_forward(ed_requests_total|_failures_total)' >"$OUT/forward-metrics.txt" || true

python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
rows = {}
for mode in ("direct", "forwarded"):
    rs = [json.load(open(f"{out}/{mode}-{i}.json")) for i in range(1, runs + 1)]
    med = lambda f: statistics.median(f(r) for r in rs)
    rows[mode] = dict(
        rps=med(lambda r: r["requests_per_sec"]),
        p50=med(lambda r: r["round_trip"]["p50"]),
        p99=med(lambda r: r["round_trip"]["p99"]),
        cpu=med(lambda r: r["server_cpu_us_per_request"]),
    )
print(f"{'mode':10} {'requests/s':>11} {'RTT p50 ms':>11} {'RTT p99 ms':>11} {'server CPU µs/request':>22}   (medians of {runs})")
for mode, r in rows.items():
    print(f"{mode:10} {r['rps']:11.0f} {r['p50']:11.3f} {r['p99']:11.3f} {r['cpu']:22.1f}")
d, f = rows["direct"], rows["forwarded"]
print(f"forwarding adds {f['p50'] - d['p50']:.3f} ms at the median round trip (two requests) and "
      f"{f['cpu'] - d['cpu']:.1f} µs of server CPU per request")
PY
cat "$OUT/forward-metrics.txt"
