#!/usr/bin/env bash
# Holds TOTAL idle Socket.IO connections on this machine at once: REPLICAS
# hubbub-server replicas sharing a fresh redis-server, each loaded by its own
# `hubbub-bench idle` process (one process may hold only as many sockets as its
# open-file limit allows, so both sides are spread over processes). Prints, from
# every replica's /metrics, the most sessions open at the same time, and the
# servers' resident memory per connection.
#
# Usage: bench/idle-many.sh          (defaults below; about a minute after the build)
# Settings (environment):
#   TOTAL=100000     connections to hold at once
#   REPLICAS=6       server replicas (and load tool processes); TOTAL/REPLICAS + a
#                    few hundred must fit under the open-file hard limit
#   HOLD=30          seconds every load tool holds its connections once they are up
#   OUT=dir          where the JSON reports and logs go (default: a new temp dir)
#   PROFILE=release  cargo profile
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

TOTAL=${TOTAL:-100000}
REPLICAS=${REPLICAS:-6}
HOLD=${HOLD:-30}
OUT=${OUT:-$(mktemp -d -t hubbub-idle.XXXXXX)}
PROFILE=${PROFILE:-release}
mkdir -p "$OUT"

ensure_apt curl curl
ensure_apt redis-server redis-server
echo "==> cargo build --profile $PROFILE -p hubbub-server -p hubbub-bench"
(cd "$root" && cargo build --profile "$PROFILE" --quiet -p hubbub-server -p hubbub-bench)
target_dir=$root/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
server_bin=$target_dir/hubbub-server
bench_bin=$target_dir/hubbub-bench

per=$(( (TOTAL + REPLICAS - 1) / REPLICAS ))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ $((per + 500)) -gt "$hard" ]; then
  echo "error: $per connections per process do not fit under the open-file hard limit $hard;" \
    "raise REPLICAS" >&2
  exit 1
fi
ulimit -n "$hard"

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT

# wait_ready URL PID: waits until URL answers 200 (at most 10 s).
wait_ready() {
  for _ in $(seq 1 100); do
    if curl -fs -o /dev/null "$1"; then return 0; fi
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "error: $1 did not become ready" >&2
  return 1
}

port=19600
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
pids+=("$!")
redis_url="redis://127.0.0.1:$port"
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

server_pids=()
server_ports=()
for i in $(seq 1 "$REPLICAS"); do
  p=$((port + i))
  "$server_bin" --bind "127.0.0.1:$p" --redis-url "$redis_url" --log warn \
    >"$OUT/server-$p.log" 2>&1 &
  pids+=("$!")
  server_pids+=("$!")
  server_ports+=("$p")
  wait_ready "http://127.0.0.1:$p/readyz" "$!"
done

# open_sessions: the sum of hubbub_connections_open over the replicas.
open_sessions() {
  local p sum=0 n
  for p in "${server_ports[@]}"; do
    n=$(curl -fsS "http://127.0.0.1:$p/metrics" |
      awk '/^hubbub_connections_open\{/ { s += $2 } END { printf "%d", s }')
    sum=$((sum + n))
  done
  echo "$sum"
}

echo "==> $REPLICAS replicas, $per connections each, held $HOLD s; reports in $OUT"
tools=()
for i in $(seq 0 $((REPLICAS - 1))); do
  "$bench_bin" --threads 1 idle --json --url "http://127.0.0.1:${server_ports[$i]}" \
    --connections "$per" --hold "$HOLD" --pids "${server_pids[$i]}" \
    >"$OUT/idle-$i.json" 2>"$OUT/idle-$i.err" &
  tools+=("$!")
done

# Samples the replicas' own count while the tools hold their connections.
most=0
while :; do
  running=0
  for t in "${tools[@]}"; do kill -0 "$t" 2>/dev/null && running=1; done
  [ "$running" = 1 ] || break
  n=$(open_sessions || echo 0)
  if [ "$n" -gt "$most" ]; then most=$n; fi
  sleep 1
done
failed=0
for t in "${tools[@]}"; do wait "$t" || failed=1; done
if [ "$failed" = 1 ]; then
  echo "error: a load tool failed; see $OUT/idle-*.err" >&2
  exit 1
fi

python3 - "$OUT" "$REPLICAS" "$most" "$TOTAL" <<'PY'
import json, sys
out, replicas, most, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
established = held = grown = 0
rate = []
for i in range(replicas):
    r = json.load(open(f"{out}/idle-{i}.json"))
    established += r["established"]
    held += r["still_open"]
    rate.append(r["connects_per_sec"])
    for m in r["servers_memory"]:
        grown += m["rss_after_kib"] - m["rss_before_kib"]
print(f"established        {established} of {total}")
print(f"held after the hold {held}")
print(f"most open at once  {most} (sum of hubbub_connections_open over {replicas} replicas)")
print(f"server memory      {grown / 1024:.0f} MiB in all, {grown * 1024 / max(established, 1):.0f} B per connection")
print(f"connects/s         {min(rate):.0f}–{max(rate):.0f} per load tool, {replicas} at once")
if most < total or held < total:
    sys.exit(f"error: {most} connections open at once, {held} held; expected {total}")
PY
