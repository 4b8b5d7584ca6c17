#!/usr/bin/env bash
# Runs the same scenarios against hubbub-server (release build), socketioxide 0.18
# (bench/peers/socketioxide, release build from the registry) and socket.io 4.8
# (Node, bench/node/server.js), one process each, in rotating order, REPS times,
# and prints the medians and the ratios hubbub / socketioxide and hubbub / socket.io.
#
# Pinning, identical for every server: the server runs under `taskset -c 0`
# (hubbub therefore starts one actix worker, socketioxide one tokio worker; Node
# is single-threaded anyway), the load tool under `taskset -c 1` with one runtime
# thread.
#
# Usage: bench/compare.sh   (defaults below; about 20 minutes after the builds on the
#                           2-core development machine: three servers, Redis, RabbitMQ
#                           and Redis Cluster variants)
# Settings (environment):
#   REPS=3               repetitions of every scenario on every server
#   SUBSCRIBERS=1000     fan-out receivers
#   PUBLISHERS=2         fan-out senders (not counted as receivers)
#   SIZE=100             bytes per message argument
#   DURATION=10          seconds of sending per fan-out run
#   RATES="100 400"      total messages per second, one fan-out scenario each
#   IDLE=10000           connections held by the idle scenario (0 skips it)
#   REDIS=1              also run the fan-out against two replicas sharing a fresh
#                        redis-server (socket.io: @socket.io/redis-adapter; hubbub:
#                        --redis-url); replicas and Redis all on CPU 0; 0 skips it
#   CLUSTER=1            also run the fan-out and saturate against two hubbub replicas
#                        sharing a fresh three-shard Redis Cluster (three cluster-mode
#                        redis-servers, one master each, no replicas; --redis-cluster-nodes),
#                        all on CPU 0, and record how many PUBLISH/SPUBLISH each shard
#                        served (shards-*.txt in OUT); 0 skips it
#   AMQP=1               also run the fan-out against two hubbub replicas sharing a
#                        private rabbitmq-server node (--amqp-url, no Redis), all on
#                        CPU 0 (socket.io has no counterpart here); 0 skips it
#   SATURATE_REPS=1      saturate runs per server, one process and (with REDIS=1)
#                        two replicas through Redis: an unjudged 3 s warm-up, then
#                        rate x1.5 per 3 s step from 10 msg/s until loss or
#                        p99 > 50 ms (at most MAX_STEPS steps), then REFINE bisections
#                        between the best and the first failing rate; 0 skips it
#   BUDGET=0             also run saturate with every one-process server held to this
#                        percentage of one core (a CPU cgroup: cgroup v2's cpu.max or
#                        v1's CFS quota, 10 ms period; needs root), BUDGET_REPS times.
#                        At a full core the ramps of the fastest servers end where the
#                        load tool's one core does; with a budget the servers are the
#                        limit, and the ratio is capacity per unit of CPU. 0 skips it
#   BUDGET_REPS=2        saturate runs per server with the budget
#   REFINE=3             bisections after the ramp (3: the best rate within 5 %)
#   MAX_STEPS=16         most ramp steps (16 reach 4,400 msg/s: 4.4 M deliveries/s to
#                        1000 subscribers, so that no server's ramp ends at the cap)
#   PEERS="socketioxide socketio"
#                        the servers hubbub is compared with (either, both, or "" for
#                        hubbub alone)
#   OUT=dir              where the JSON reports go (default: a new temp dir)
#   PROFILE=release      cargo profile; `PROFILE=dev` only to check the script quickly
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

REPS=${REPS:-3}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
PUBLISHERS=${PUBLISHERS:-2}
SIZE=${SIZE:-100}
DURATION=${DURATION:-10}
RATES=${RATES:-100 400}
IDLE=${IDLE:-10000}
REDIS=${REDIS:-1}
AMQP=${AMQP:-1}
CLUSTER=${CLUSTER:-1}
SATURATE_REPS=${SATURATE_REPS:-1}
BUDGET=${BUDGET:-0}
BUDGET_REPS=${BUDGET_REPS:-2}
REFINE=${REFINE:-3}
MAX_STEPS=${MAX_STEPS:-16}
OUT=${OUT:-$(mktemp -d -t hubbub-compare.XXXXXX)}
PROFILE=${PROFILE:-release}
PEERS=${PEERS-socketioxide socketio}
mkdir -p "$OUT"

ensure_apt util-linux taskset
ensure_apt curl curl
if [ "$REDIS" = 1 ] || [ "$CLUSTER" = 1 ]; then ensure_apt redis-server redis-server; fi
if [ "$AMQP" = 1 ]; then RUNLEVEL=1 ensure_apt rabbitmq-server rabbitmq-server; fi
case " $PEERS " in *" socketio "*) ensure_npm "$root/bench/node" ;; esac
echo "==> cargo build --profile $PROFILE -p hubbub-server -p hubbub-bench"
(cd "$root" && cargo build --profile "$PROFILE" --quiet -p hubbub-server -p hubbub-bench)
profile_dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
target_dir=$root/target/$profile_dir
server_bin=$target_dir/hubbub-server
bench_bin=$target_dir/hubbub-bench
peer_dir=$root/bench/peers/socketioxide
case " $PEERS " in
  *" socketioxide "*)
    echo "==> cargo build --profile $PROFILE (bench/peers/socketioxide: socketioxide 0.18 from the registry)"
    (cd "$peer_dir" && cargo build --profile "$PROFILE" --quiet --locked)
    ;;
esac
peer_bin=$peer_dir/target/$profile_dir/socketioxide-peer

# Room for the idle scenario's connections in both the servers and the tool.
ulimit -n "$(( IDLE + 20000 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

server_pids=""
# Process groups of the RabbitMQ nodes this script started (epmd, the script, beam).
rabbit_groups=""
stop_server() {
  local pid
  for pid in $server_pids; do kill "$pid" 2>/dev/null || true; done
  for pid in $rabbit_groups; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  for pid in $server_pids $rabbit_groups; do wait "$pid" 2>/dev/null || true; done
  server_pids=""
  rabbit_groups=""
}
trap 'stop_server; remove_budget' EXIT

port=19100
# wait_port PORT PID NAME: waits until PORT accepts connections (at most 10 s).
wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "error: $3 did not start on port $1; log:" >&2
  cat "$OUT/server-$1.log" >&2
  return 1
}

# start_rabbitmq: a private RabbitMQ node (its own ports, epmd, data directory and
# Erlang cookie under $OUT, never the system service) in its own process group on CPU 0;
# sets amqp_port and adds the broker's pid to server_pids' CPU accounting.
start_rabbitmq() {
  amqp_port=$((port + 1))
  local epmd_port=$((port + 2)) dist_port=$((port + 3))
  port=$((port + 3))
  local d="$OUT/rabbitmq-$amqp_port"
  mkdir -p "$d/home"
  printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$amqp_port" >"$d/rabbitmq.conf"
  echo '[].' >"$d/enabled_plugins"
  # The inner script reads ERL_EPMD_PORT from its environment, hence the single quotes.
  # shellcheck disable=SC2016
  HOME="$d/home" RABBITMQ_NODENAME="hubbub-bench-$amqp_port@localhost" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$amqp_port" RABBITMQ_DIST_PORT="$dist_port" \
    ERL_EPMD_PORT="$epmd_port" ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" RABBITMQ_PLUGINS_EXPAND_DIR="$d/plugins-expand" \
    setsid taskset -c 0 sh -c 'epmd -port "$ERL_EPMD_PORT" & exec /usr/lib/rabbitmq/bin/rabbitmq-server' \
    >"$OUT/server-$amqp_port.log" 2>&1 &
  local group=$!
  rabbit_groups="$rabbit_groups $group"
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$amqp_port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  local beam
  beam=$(pgrep -g "$group" beam.smp | head -1 || true)
  if [ -z "$beam" ]; then
    echo "error: rabbitmq-server did not start on port $amqp_port; log:" >&2
    cat "$OUT/server-$amqp_port.log" >&2
    return 1
  fi
  # Counted with the servers' CPU (as redis-server is), but never signalled on its own.
  broker_pids="$broker_pids $beam"
}

# shard_stats FILE: how many PUBLISH/SPUBLISH each shard of the cluster served, into FILE.
shard_stats() {
  local p slots stats
  for p in $cluster_ports; do
    slots=$(redis-cli -p "$p" cluster nodes | awk '/myself/ {print $9}')
    stats=$(redis-cli -p "$p" info commandstats | { grep -E '^cmdstat_(s?publish):' || true; } | cut -d, -f1 | tr '\n' ' ')
    echo "shard 127.0.0.1:$p (slots $slots): ${stats:-no publishes}"
  done >"$1"
}

# start_one KIND [REDIS_URL [AMQP_URL [CLUSTER_SEEDS]]]: one server process on a fresh port pinned to CPU 0;
# appends to server_pids and urls.
start_one() {
  port=$((port + 1))
  case $1 in
    socketio)
      taskset -c 0 node "$root/bench/node/server.js" "$port" ${2:+"$2"} >"$OUT/server-$port.log" 2>&1 &
      ;;
    socketioxide)
      taskset -c 0 "$peer_bin" "$port" ${2:+"$2"} >"$OUT/server-$port.log" 2>&1 &
      ;;
    hubbub)
      # No welcome message and no per-connection rate limit: the same behaviour as the Node server.
      taskset -c 0 "$server_bin" --bind "127.0.0.1:$port" --welcome "" \
        --rate-limit 100000 --rate-burst 1000000 --log warn ${2:+--redis-url "$2"} ${3:+--amqp-url "$3"} \
        ${4:+--redis-cluster-nodes "$4"} \
        >"$OUT/server-$port.log" 2>&1 &
      ;;
  esac
  local pid=$!
  server_pids="$server_pids $pid"
  wait_port "$port" "$pid" "$1"
  if [ "$1" = hubbub ]; then
    # hubbub listens before its Redis connections are up; /readyz says when they are
    # (the Node server only listens once its adapter is connected).
    for _ in $(seq 1 100); do
      if curl -fs -o /dev/null "http://127.0.0.1:$port/readyz"; then break; fi
      sleep 0.1
    done
  fi
  urls="${urls:+$urls,}http://127.0.0.1:$port"
}

# start_server NAME: `socketio`, `socketioxide` or `hubbub` (one process), or
# NAME-redis (a fresh redis-server and two replicas sharing it), or `hubbub-amqp`
# (a fresh RabbitMQ node and two hubbub replicas sharing it), all on CPU 0.
# Sets url (comma-separated) and pids (comma-separated, Redis included).
start_server() {
  urls=""
  broker_pids=""
  case $1 in
    *-redis)
      port=$((port + 1))
      local redis_port=$port
      taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        >"$OUT/server-$redis_port.log" 2>&1 &
      server_pids="$server_pids $!"
      wait_port "$redis_port" "$!" redis-server
      start_one "${1%-redis}" "redis://127.0.0.1:$redis_port"
      start_one "${1%-redis}" "redis://127.0.0.1:$redis_port"
      ;;
    hubbub-cluster)
      # Three cluster-mode nodes, one shard each; their bus ports are 10000 above.
      cluster_ports=""
      local p seeds=""
      for _ in 1 2 3; do
        port=$((port + 1))
        mkdir -p "$OUT/cluster-$port"
        taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
          --dir "$OUT/cluster-$port" --cluster-enabled yes --cluster-config-file nodes.conf \
          --cluster-port $((port + 10000)) >"$OUT/server-$port.log" 2>&1 &
        server_pids="$server_pids $!"
        wait_port "$port" "$!" redis-server
        cluster_ports="$cluster_ports $port"
        seeds="${seeds:+$seeds,}127.0.0.1:$port"
      done
      local nodes=()
      for p in $cluster_ports; do nodes+=("127.0.0.1:$p"); done
      redis-cli --cluster create "${nodes[@]}" --cluster-yes >"$OUT/cluster-create.log" 2>&1
      for _ in $(seq 1 100); do
        if redis-cli -p "${nodes[0]##*:}" cluster info 2>/dev/null | grep -q cluster_state:ok; then break; fi
        sleep 0.1
      done
      start_one hubbub "" "" "$seeds"
      start_one hubbub "" "" "$seeds"
      ;;
    hubbub-amqp)
      start_rabbitmq
      start_one hubbub "" "amqp://guest:guest@127.0.0.1:$amqp_port/%2f"
      start_one hubbub "" "amqp://guest:guest@127.0.0.1:$amqp_port/%2f"
      ;;
    *) start_one "$1" ;;
  esac
  url=$urls
  # Unquoted on purpose: word splitting drops the list's leading space.
  # shellcheck disable=SC2086
  pids=$(echo $server_pids $broker_pids | tr ' ' ',')
}

bench() {
  taskset -c 1 "$bench_bin" --threads 1 --json "$@"
}

# A CPU cgroup holding a server to BUDGET % of one core (10 ms period).
budget_dir=""
make_budget() {
  local quota=$((BUDGET * 100)) period=10000
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    budget_dir=/sys/fs/cgroup/hubbub-bench-$$
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control ||
      echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
    mkdir "$budget_dir"
    echo "$quota $period" >"$budget_dir/cpu.max"
  elif [ -d /sys/fs/cgroup/cpu ]; then
    budget_dir=/sys/fs/cgroup/cpu/hubbub-bench-$$
    mkdir "$budget_dir"
    echo "$period" >"$budget_dir/cpu.cfs_period_us"
    echo "$quota" >"$budget_dir/cpu.cfs_quota_us"
  else
    echo "error: BUDGET needs a CPU cgroup (cgroup v2 at /sys/fs/cgroup or v1's cpu controller)" >&2
    return 1
  fi
}
remove_budget() {
  if [ -n "$budget_dir" ]; then rmdir "$budget_dir" 2>/dev/null || true; fi
}

echo "==> results in $OUT"
# rotation N WORD...: the words rotated left by N (each server goes first in turn).
rotation() {
  local n=$1
  shift
  local words=("$@")
  local k=${#words[@]} i
  for ((i = 0; i < k; i++)); do printf '%s ' "${words[$(((i + n) % k))]}"; done
}
servers=(hubbub)
for peer in $PEERS; do servers+=("$peer"); done
for rep in $(seq 1 "$REPS"); do
  # Rotate which server goes first in each repetition.
  order=$(rotation "$((rep - 1))" "${servers[@]}")
  if [ "$REDIS" = 1 ]; then
    order="$order $(rotation "$((rep - 1))" "${servers[@]/%/-redis}")"
  fi
  if [ "$AMQP" = 1 ]; then order="$order hubbub-amqp"; fi
  if [ "$CLUSTER" = 1 ]; then order="$order hubbub-cluster"; fi
  for name in $order; do
    for rate in $RATES; do
      start_server "$name"
      echo "--> rep $rep $name fanout rate $rate (load average $(cut -d" " -f1 /proc/loadavg))"
      bench fanout --url "$url" --subscribers "$SUBSCRIBERS" --publishers "$PUBLISHERS" \
        --rate "$rate" --size "$SIZE" --duration "$DURATION" --drain 5 --pids "$pids" \
        >"$OUT/fanout-$rate-$name-$rep.json" || echo "    (run failed)"
      if [ "$name" = hubbub-cluster ]; then shard_stats "$OUT/shards-fanout-$rate-$rep.txt"; fi
      stop_server
    done
    if [ "$IDLE" -gt 0 ] && [ "${name%-redis}" = "$name" ] && [ "${name%-amqp}" = "$name" ] &&
      [ "${name%-cluster}" = "$name" ]; then
      start_server "$name"
      echo "--> rep $rep $name idle $IDLE (load average $(cut -d" " -f1 /proc/loadavg))"
      bench idle --url "$url" --connections "$IDLE" --hold 5 --pids "$pids" \
        >"$OUT/idle-$name-$rep.json" || echo "    (run failed)"
      stop_server
    fi
  done
done
for rep in $(seq 1 "$SATURATE_REPS"); do
  order=$(rotation "$((rep - 1))" "${servers[@]}")
  if [ "$REDIS" = 1 ]; then
    order="$order $(rotation "$((rep - 1))" "${servers[@]/%/-redis}")"
  fi
  if [ "$CLUSTER" = 1 ]; then order="$order hubbub-cluster"; fi
  for name in $order; do
    start_server "$name"
    echo "--> rep $rep $name saturate (load average $(cut -d" " -f1 /proc/loadavg))"
    bench saturate --url "$url" --subscribers "$SUBSCRIBERS" --publishers "$PUBLISHERS" \
      --size "$SIZE" --start-rate 10 --factor 1.5 --max-steps "$MAX_STEPS" --refine "$REFINE" --p99-ms 50 \
      --warmup 3 --duration 3 --drain 3 --pids "$pids" >"$OUT/saturate-$name-$rep.json" ||
      echo "    (run failed)"
    if [ "$name" = hubbub-cluster ]; then shard_stats "$OUT/shards-saturate-$rep.txt"; fi
    stop_server
  done
done
if [ "$BUDGET" != 0 ]; then
  if [ "$BUDGET" -lt 5 ] || [ "$BUDGET" -gt 100 ]; then
    echo "error: BUDGET=$BUDGET: a percentage of one core, 5..100" >&2
    exit 2
  fi
  make_budget || {
    echo "error: could not create a CPU cgroup for BUDGET (run as root)" >&2
    exit 1
  }
  for rep in $(seq 1 "$BUDGET_REPS"); do
    for name in $(rotation "$((rep - 1))" "${servers[@]}"); do
      start_server "$name"
      # The whole process (every thread) moves into the cgroup.
      echo "$pids" >"$budget_dir/cgroup.procs"
      echo "--> rep $rep $name saturate at $BUDGET % of a core (load average $(cut -d" " -f1 /proc/loadavg))"
      bench saturate --url "$url" --subscribers "$SUBSCRIBERS" --publishers "$PUBLISHERS" \
        --size "$SIZE" --start-rate 10 --factor 1.5 --max-steps "$MAX_STEPS" --refine "$REFINE" --p99-ms 50 \
        --warmup 3 --duration 3 --drain 3 --pids "$pids" >"$OUT/budget$BUDGET-$name-$rep.json" ||
        echo "    (run failed)"
      stop_server
    done
  done
fi

echo
echo "== machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p')"
echo "== $PROFILE build; $SUBSCRIBERS subscribers, $PUBLISHERS publishers, $SIZE B, ${DURATION} s per run, median of $REPS"
node "$root/bench/summary.js" "$OUT" | tee "$OUT/summary.md"
