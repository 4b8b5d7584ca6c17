#!/usr/bin/env bash
# Packaging tests: the Helm chart charts/hubbub (rendered and linted offline with the
# Helm v4 SDK, every object checked against the Kubernetes JSON schemas and the CRD,
# values.schema.json rejecting wrong values) and the Dockerfile/.dockerignore (parsed
# and checked without a Docker engine). Python tools come pinned from
# tests/helm/requirements.txt into the virtualenv tests/helm/.venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

ensure_apt python3 python3
ensure_apt git git
ensure_apt wget wget
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
ensure_venv tests/helm/.venv tests/helm/requirements.txt

cd tests/helm
exec .venv/bin/python -m pytest -p no:cacheprovider -q "$@"
