#!/usr/bin/env bash
# The web page and hubbub's browser Socket.IO client, tested in headless Chromium (Debian's
# `chromium`, driven by playwright-core from tests/browser; no browser is downloaded) against
# target/debug/hubbub-server (three replicas on a private redis-server behind a round-robin
# proxy for the no-sticky-sessions test), plus protocol and interop tests of the client.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

ensure_apt chromium chromium
ensure_apt redis-server redis-server
ensure_npm tests/browser
echo "==> cargo build -p hubbub-server"
cargo build --locked -p hubbub-server
cd tests/browser
node --test --test-concurrency=1 --test-reporter=spec ./*.test.js
