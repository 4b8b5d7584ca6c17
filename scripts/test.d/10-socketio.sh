#!/usr/bin/env bash
# The Socket.IO protocol core (crates/socketio/examples/echo.rs) and the chat application (hubbub-server)
# driven by the official socket.io-client 4.x from Node (tests/node, `npm ci` from its
# committed lockfile); tests/node/admin.test.mjs also starts private redis-server processes.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

ensure_apt nodejs node
ensure_apt redis-server redis-server
ensure_npm tests/node
echo "==> cargo build -p hubbub-server; cargo build -p hubbub-socketio --example echo"
cargo build --locked -p hubbub-server
cargo build --locked -p hubbub-socketio --example echo
cd tests/node
node --test --test-concurrency=1 ./*.test.mjs
