#!/usr/bin/env bash
# Runs the same scenarios against socket.io 4.8 (Node, bench/node/server.js) and
# hubbub-server (release build), one process each, alternating, REPS times, and
# prints the medians and the ratios hubbub / socket.io.
#
# Pinning, identical for both servers: the server runs under `taskset -c 0`
# (hubbub therefore starts one actix worker; Node is single-threaded anyway),
# the load tool under `taskset -c 1` with one runtime thread.
#
# Usage: bench/compare.sh            (defaults below; about 5 minutes after the build)
# Settings (environment):
#   REPS=3               repetitions of every scenario on every server
#   SUBSCRIBERS=1000     fan-out receivers
#   PUBLISHERS=2         fan-out senders (not counted as receivers)
#   SIZE=100             bytes per message argument
#   DURATION=10          seconds of sending per fan-out run
#   RATES="100 400"      total messages per second, one fan-out scenario each
#   IDLE=10000           connections held by the idle scenario (0 skips it)
#   SATURATE_REPS=1      saturate runs per server (rate x1.5 per 3 s step from 10 msg/s
#                        until loss or p99 > 50 ms, at most 12 steps); 0 skips it
#   OUT=dir              where the JSON reports go (default: a new temp dir)
#   PROFILE=release      cargo profile; `PROFILE=dev` only to check the script quickly
#
# Not covered here: the two-replica variants through Redis (see docs/performance.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib.sh
source "$root/scripts/lib.sh"

REPS=${REPS:-3}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
PUBLISHERS=${PUBLISHERS:-2}
SIZE=${SIZE:-100}
DURATION=${DURATION:-10}
RATES=${RATES:-100 400}
IDLE=${IDLE:-10000}
SATURATE_REPS=${SATURATE_REPS:-1}
OUT=${OUT:-$(mktemp -d -t hubbub-compare.XXXXXX)}
PROFILE=${PROFILE:-release}
mkdir -p "$OUT"

ensure_apt util-linux taskset
ensure_npm "$root/bench/node"
echo "==> cargo build --profile $PROFILE --bin hubbub-server --bin hubbub-bench"
(cd "$root" && cargo build --profile "$PROFILE" --quiet --bin hubbub-server --bin hubbub-bench)
target_dir=$root/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
server_bin=$target_dir/hubbub-server
bench_bin=$target_dir/hubbub-bench

# Room for the idle scenario's connections in both the servers and the tool.
ulimit -n "$(( IDLE + 20000 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

port=19100
# start_server NAME: starts it on a fresh port pinned to CPU 0; sets server_pid and url.
start_server() {
  port=$((port + 1))
  url="http://127.0.0.1:$port"
  case $1 in
    socketio)
      taskset -c 0 node "$root/bench/node/server.js" "$port" >"$OUT/server-$port.log" 2>&1 &
      ;;
    hubbub)
      # No welcome message and no per-connection rate limit: the same behaviour as the Node server.
      taskset -c 0 "$server_bin" --bind "127.0.0.1:$port" --welcome "" \
        --rate-limit 100000 --rate-burst 1000000 --log warn >"$OUT/server-$port.log" 2>&1 &
      ;;
  esac
  server_pid=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "error: $1 did not start on port $port; log:" >&2
  cat "$OUT/server-$port.log" >&2
  return 1
}

bench() {
  taskset -c 1 "$bench_bin" --threads 1 --json "$@"
}

echo "==> results in $OUT"
for rep in $(seq 1 "$REPS"); do
  # Alternate which server goes first in each repetition.
  if [ $((rep % 2)) = 1 ]; then order="socketio hubbub"; else order="hubbub socketio"; fi
  for name in $order; do
    for rate in $RATES; do
      start_server "$name"
      echo "--> rep $rep $name fanout rate $rate (load average $(cut -d" " -f1 /proc/loadavg))"
      bench fanout --url "$url" --subscribers "$SUBSCRIBERS" --publishers "$PUBLISHERS" \
        --rate "$rate" --size "$SIZE" --duration "$DURATION" --drain 5 --pids "$server_pid" \
        >"$OUT/fanout-$rate-$name-$rep.json" || echo "    (run failed)"
      stop_server
    done
    if [ "$IDLE" -gt 0 ]; then
      start_server "$name"
      echo "--> rep $rep $name idle $IDLE (load average $(cut -d" " -f1 /proc/loadavg))"
      bench idle --url "$url" --connections "$IDLE" --hold 5 --pids "$server_pid" \
        >"$OUT/idle-$name-$rep.json" || echo "    (run failed)"
      stop_server
    fi
  done
done
for rep in $(seq 1 "$SATURATE_REPS"); do
  if [ $((rep % 2)) = 1 ]; then order="socketio hubbub"; else order="hubbub socketio"; fi
  for name in $order; do
    start_server "$name"
    echo "--> rep $rep $name saturate (load average $(cut -d" " -f1 /proc/loadavg))"
    bench saturate --url "$url" --subscribers "$SUBSCRIBERS" --publishers "$PUBLISHERS" \
      --size "$SIZE" --start-rate 10 --factor 1.5 --max-steps 12 --p99-ms 50 \
      --duration 3 --drain 3 --pids "$server_pid" >"$OUT/saturate-$name-$rep.json" || echo "    (run failed)"
    stop_server
  done
done

echo
echo "== machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p')"
echo "== $PROFILE build; $SUBSCRIBERS subscribers, $PUBLISHERS publishers, $SIZE B, ${DURATION} s per run, median of $REPS"
node "$root/bench/summary.js" "$OUT" | tee "$OUT/summary.md"
