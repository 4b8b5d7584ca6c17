#!/usr/bin/env bash
# Instructions per delivery, counted by callgrind, for hubbub and socketioxide
# (issue 15): numbers that do not move with the load on this shared machine,
# unlike times.
#
# For each server and each message count, the server runs under
# `valgrind --tool=callgrind` (one process, all its threads), the load tool sends
# COUNT_SHORT, then COUNT_LONG, `sendToAll` messages to SUBSCRIBERS subscribers in
# two separate runs, and the server is stopped. The instructions per delivery are
#
#   (Ir(long run) - Ir(short run)) / (deliveries(long) - deliveries(short))
#
# so start-up, the connections' set-up and shutdown cancel out: what is left is
# the cost of receiving a message, broadcasting it and writing it to every
# subscriber (user space only; the kernel's share is not counted by callgrind).
#
# Usage: bench/callgrind.sh      (about 6 minutes after the builds)
# Settings (environment):
#   SUBSCRIBERS=200    receivers (callgrind runs the server ~50x slower)
#   RATE=20            messages per second (slow enough for the server under valgrind)
#   SHORT=5 LONG=15    seconds of sending in the two runs
#   SIZE=100           bytes per message argument
#   SERVERS="hubbub socketioxide"
#   OUT=dir            where the callgrind files and reports go (default: a new temp dir)
#   SERVER_BIN=path    a hubbub-server binary to measure instead of building one (an A/B)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

SUBSCRIBERS=${SUBSCRIBERS:-200}
RATE=${RATE:-20}
SHORT=${SHORT:-5}
LONG=${LONG:-15}
SIZE=${SIZE:-100}
SERVERS=${SERVERS:-hubbub socketioxide}
OUT=${OUT:-$(mktemp -d -t hubbub-callgrind.XXXXXX)}
mkdir -p "$OUT"

ensure_apt valgrind valgrind
ensure_apt util-linux taskset
if [ -z "${SERVER_BIN:-}" ]; then
  echo "==> cargo build --release -p hubbub-server -p hubbub-bench"
  (cd "$root" && cargo build --release --quiet -p hubbub-server -p hubbub-bench)
fi
case " $SERVERS " in
  *" socketioxide "*)
    echo "==> cargo build --release (bench/peers/socketioxide)"
    (cd "$root/bench/peers/socketioxide" && cargo build --release --quiet --locked)
    ;;
esac
server_bin=${SERVER_BIN:-$root/target/release/hubbub-server}
bench_bin=$root/target/release/hubbub-bench
peer_bin=$root/bench/peers/socketioxide/target/release/socketioxide-peer

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

port=19400
# run NAME SECONDS: one server under callgrind, one fan-out run; sets ir
# (instructions) and received (deliveries).
run() {
  local name=$1 secs=$2
  port=$((port + 1))
  local cg="$OUT/callgrind-$name-$secs.out"
  local cmd
  case $name in
    hubbub)
      cmd=("$server_bin" --bind "127.0.0.1:$port" --welcome "" --rate-limit 100000
        --rate-burst 1000000 --log warn)
      ;;
    socketioxide) cmd=("$peer_bin" "$port") ;;
  esac
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$cg" "${cmd[@]}" \
    >"$OUT/server-$name-$secs.log" 2>&1 &
  server_pid=$!
  local up=0
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  if [ "$up" != 1 ]; then
    echo "error: $name did not start under valgrind; log:" >&2
    cat "$OUT/server-$name-$secs.log" >&2
    return 1
  fi
  taskset -c 1 "$bench_bin" --threads 1 --json --connect-timeout 60 fanout \
    --url "http://127.0.0.1:$port" --subscribers "$SUBSCRIBERS" --publishers 1 \
    --rate "$RATE" --size "$SIZE" --duration "$secs" --drain 5 --concurrency 20 \
    >"$OUT/fanout-$name-$secs.json"
  stop_server
  local loss
  ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$cg" | head -1)
  received=$(node -e 'const r=require(process.argv[1]); console.log(r.received)' "$OUT/fanout-$name-$secs.json")
  loss=$(node -e 'const r=require(process.argv[1]); console.log(r.loss)' "$OUT/fanout-$name-$secs.json")
  if [ -z "$ir" ] || [ "$loss" != 0 ]; then
    echo "error: $name run of $secs s: instructions '${ir}', loss $loss (see $OUT)" >&2
    return 1
  fi
}

echo "==> results in $OUT"
printf '| server | Ir, %s s run | deliveries | Ir, %s s run | deliveries | instructions per delivery |\n' "$SHORT" "$LONG" | tee "$OUT/summary.md"
echo "|---|---:|---:|---:|---:|---:|" | tee -a "$OUT/summary.md"
for name in $SERVERS; do
  run "$name" "$SHORT"
  ir1=$ir d1=$received
  run "$name" "$LONG"
  ir2=$ir d2=$received
  per=$(( (ir2 - ir1) / (d2 - d1) ))
  echo "| $name | $ir1 | $d1 | $ir2 | $d2 | $per |" | tee -a "$OUT/summary.md"
done
