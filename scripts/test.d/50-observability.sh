#!/usr/bin/env bash
# Observability tests: the chart's Grafana dashboard and alerting rules
# (charts/hubbub/files/). promtool checks the rules and runs their unit tests; the
# dashboard must load into Grafana's dashboard model; every query and rule runs in a real
# Prometheus scraping real hubbub-server replicas (two on a private redis-server, one of
# them forwarding the other's requests; two on a private rabbitmq-server node alone, with a
# broker outage) and hubbub-operator on loopback, and every metric name must be in their
# /metrics output.
# Tools: Debian's prometheus (promtool, prometheus), redis-server and rabbitmq-server;
# Python packages pinned in tests/observability/requirements.txt, in tests/observability/.venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

ensure_apt python3 python3
ensure_apt redis-server redis-server
# The test starts a private node; RUNLEVEL=1 keeps the package's install from starting the
# system service, which is never used.
RUNLEVEL=1 ensure_apt rabbitmq-server rabbitmq-server
ensure_apt prometheus promtool
# Debian's package may start its services where an init system runs; only the binaries
# are used here, so stop what the package started (and nothing else).
if command -v service >/dev/null 2>&1; then
  for unit in prometheus prometheus-node-exporter; do
    if service "$unit" status >/dev/null 2>&1; then
      echo "==> stopping the $unit service the package started (the tests run their own)"
      service "$unit" stop >/dev/null 2>&1 || true
    fi
  done
fi
# `python3 -m venv` needs Debian's python3-venv (ensurepip), which has no command of its own.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  echo "==> installing python3-venv"
  if ! { $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null; }; then
    echo "error: could not install python3-venv; install it by hand (apt-get install python3-venv)" >&2
    exit 1
  fi
fi
ensure_venv tests/observability/.venv tests/observability/requirements.txt

command -v cargo >/dev/null 2>&1 ||
  { echo "error: cargo is needed to build hubbub-server and hubbub-operator (install Rust: https://rustup.rs)" >&2; exit 1; }
echo "==> cargo build -p hubbub-server -p hubbub-operator"
cargo build --locked -q -p hubbub-server -p hubbub-operator

cd tests/observability
exec .venv/bin/python -m pytest -p no:cacheprovider -q "$@"
