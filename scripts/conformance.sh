#!/usr/bin/env bash
# The official Engine.IO and Socket.IO protocol compliance suites against
# crates/socketio/examples/conformance.rs (port 3000). Not part of scripts/test: the
# suites are the `test-suite/` directories of the GitHub repositories
# socketio/engine.io-protocol and socketio/socket.io-protocol, not npm packages, so
# they are checked out by hand:
#
#   git clone https://github.com/socketio/engine.io-protocol  SUITES/eio
#   git clone https://github.com/socketio/socket.io-protocol  SUITES/sio
#   (cd SUITES/eio/test-suite && npm ci); (cd SUITES/sio/test-suite && npm ci)
#   scripts/conformance.sh SUITES [RUNS]
#
# Runs each suite RUNS times (1 by default) and fails if any run has a failing test.
# Port 3000 must be free (the suites hard-code it). Results: docs/workspace.md.
set -euo pipefail
cd "$(dirname "$0")/.."
suites=${1:?usage: scripts/conformance.sh SUITES_DIR [RUNS]}
runs=${2:-1}
for d in eio sio; do
  [ -f "$suites/$d/test-suite/test-suite.js" ] || {
    echo "error: $suites/$d/test-suite/test-suite.js missing (see the header of $0)" >&2
    exit 1
  }
  [ -d "$suites/$d/test-suite/node_modules" ] || {
    echo "error: run 'npm ci' in $suites/$d/test-suite" >&2
    exit 1
  }
done
if ss -ltn | grep -q ':3000\b'; then
  echo "error: port 3000 is in use; the suites need it" >&2
  exit 1
fi
nice -n 10 cargo build -q -p hubbub-socketio --example conformance
bin=target/debug/examples/conformance
failed=0
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null || true' EXIT
for mode in engineio socketio; do
  d=eio; [ "$mode" = socketio ] && d=sio
  "$bin" "$mode" & server=$!
  for _ in $(seq 100); do ss -ltn | grep -q ':3000\b' && break; sleep 0.1; done
  for run in $(seq "$runs"); do
    echo "==> $mode suite, run $run"
    (cd "$suites/$d/test-suite" && timeout 300 npx mocha test-suite.js) || failed=1
  done
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  for _ in $(seq 100); do ss -ltn | grep -q ':3000\b' || break; sleep 0.1; done
done
[ "$failed" = 0 ] && echo "==> both suites passed ($runs run(s) each)"
exit "$failed"
