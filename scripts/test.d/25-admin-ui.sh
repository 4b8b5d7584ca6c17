#!/usr/bin/env bash
# The official Socket.IO Admin UI against hubbub: the built dashboard shipped in the
# @socket.io/admin-ui npm package (tests/admin-ui, `npm ci` from its committed lockfile;
# the dashboard is served by the test, never committed) driven in headless Chromium
# (Debian's `chromium` through playwright-core). Writes docs/admin-ui.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

ensure_apt chromium chromium
ensure_apt nodejs node
ensure_npm tests/admin-ui
echo "==> cargo build -p hubbub-server"
cargo build --locked -p hubbub-server
cd tests/admin-ui
node --test --test-concurrency=1 --test-reporter=spec ./*.test.js
