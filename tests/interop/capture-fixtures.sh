#!/usr/bin/env bash
# Re-captures tests/fixtures/redis-adapter/ from the real Node.js @socket.io/redis-adapter and
# @socket.io/redis-emitter (versions pinned in tests/interop/package-lock.json). Starts a
# throw-away redis-server on a free loopback port, runs capture-fixtures.js, stops Redis.
# The fixtures are committed; run this only to refresh them after a deliberate upgrade.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
ensure_apt redis-server redis-server
ensure_npm tests/interop

port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
out=tests/fixtures/redis-adapter
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
rm -f "$out"/*.bin "$out"/manifest.json
node tests/interop/capture-fixtures.js "$port" "$out"
