#!/usr/bin/env bash
# The churn soak (docs/reliability.md): one release hubbub-server with short timeouts, and
# `hubbub-bench churn` keeping CONCURRENCY clients connecting and leaving in every way
# (clean closes, TCP resets, half-open connections, abandoned upgrades, abandoned polling
# sessions, unfinished probes, clients that stop reading) for DURATION seconds. Fails unless
# the server's sessions and sockets return to zero, its task and file-descriptor counts to
# their baseline and its resident memory to within RSS_SLACK_MIB of it, with no panic in
# its log.
#
# Usage: bench/churn.sh              (3 minutes of churn after the build)
#   DURATION=180      seconds of churn (the long run in docs/: DURATION=1800)
#   CONCURRENCY=300   clients in flight at once
#   RSS_SLACK_MIB=16  how far resident memory may stay above its baseline
#   OUT=dir           report and server log (default: a new temp dir)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

DURATION=${DURATION:-180}
CONCURRENCY=${CONCURRENCY:-300}
RSS_SLACK_MIB=${RSS_SLACK_MIB:-16}
OUT=${OUT:-$(mktemp -d -t hubbub-churn.XXXXXX)}
mkdir -p "$OUT"

ensure_apt curl curl
echo "==> cargo build --release -p hubbub-server -p hubbub-bench"
(cd "$root" && nice -n 10 cargo build --release --quiet -p hubbub-server -p hubbub-bench)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Short timeouts: abandoned sessions and probes end within seconds.
"$root/target/release/hubbub-server" --bind "127.0.0.1:$port" \
  --ping-interval-ms 1000 --ping-timeout-ms 1000 --upgrade-timeout-ms 1000 \
  --connect-timeout-ms 2000 --log warn >"$OUT/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break
  kill -0 "$server" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
  sleep 0.1
done

status=0
nice -n 5 "$root/target/release/hubbub-bench" churn --url "http://127.0.0.1:$port" \
  --concurrency "$CONCURRENCY" --duration "$DURATION" --settle 30 \
  --rss-slack-mib "$RSS_SLACK_MIB" | tee "$OUT/report.txt" || status=$?
if grep -q "panicked" "$OUT/server.log"; then
  echo "error: the server panicked (see $OUT/server.log)" >&2
  status=1
fi
echo "==> report and server log in $OUT"
exit "$status"
