#!/usr/bin/env bash
# Kubernetes manifests without a cluster: renders the example ChatRooms with
# `hubbub-operator render`, checks `k8s/crd.yaml` against `hubbub-operator crd`, and
# validates the CRD, every file in k8s/ and every rendered object against the official
# Kubernetes 1.34 JSON schemas (kubernetes-validate, pinned in tests/k8s/requirements.txt),
# and the example ChatRooms (valid and invalid) against the CRD's own schema and CEL rules.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

K8S_VERSION=1.34

ensure_apt python3 python3
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian ships venv/ensurepip separately, in python3-venv
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  echo "==> installing python3-venv"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null; }; then
    echo "error: python3 venv support is missing; install python3-venv" >&2; exit 1
  fi
fi
ensure_venv tests/k8s/.venv tests/k8s/requirements.txt

echo "==> building hubbub-operator"
cargo build --locked --quiet -p hubbub-operator
OPERATOR="${CARGO_TARGET_DIR:-target}/debug/hubbub-operator"

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> k8s/crd.yaml is the output of 'hubbub-operator crd'"
"$OPERATOR" crd > "$work/crd.yaml"
if ! diff -u k8s/crd.yaml "$work/crd.yaml"; then
  echo "error: k8s/crd.yaml is stale; run: cargo run -p hubbub-operator -- crd > k8s/crd.yaml" >&2
  exit 1
fi

echo "==> rendering the example ChatRooms"
rendered=()
for room in k8s/examples/*.yaml tests/k8s/valid/edge-values.yaml; do
  out="$work/rendered-$(basename "$room")"
  "$OPERATOR" render -f "$room" > "$out"
  rendered+=("$out")
done

echo "==> a schema-valid but unreconcilable ChatRoom is refused by render"
if "$OPERATOR" render -f tests/k8s/valid/ingress-without-host.yaml > "$work/nohost.out" 2> "$work/nohost.err"; then
  echo "error: render accepted an ingress without a host" >&2; exit 1
fi
grep -q "spec.ingress needs a host" "$work/nohost.err" \
  || { echo "error: unexpected render error:" >&2; cat "$work/nohost.err" >&2; exit 1; }
echo "ok    render refuses tests/k8s/valid/ingress-without-host.yaml: $(cat "$work/nohost.err")"

if "$OPERATOR" render -f tests/k8s/valid/redis-external-port-out-of-range.yaml > "$work/badport.out" 2> "$work/badport.err"; then
  echo "error: render accepted an external redis node with port 99999" >&2; exit 1
fi
grep -q 'spec.redis.external: nodes: "redis-1.redis:99999" is not host:port' "$work/badport.err" \
  || { echo "error: unexpected render error:" >&2; cat "$work/badport.err" >&2; exit 1; }
echo "ok    render refuses tests/k8s/valid/redis-external-port-out-of-range.yaml: $(cat "$work/badport.err")"

echo "==> an external Redis: no Redis of the operator's own, passwords only as secretKeyRef"
for room in k8s/examples/chatroom-redis-{external,sentinel,cluster}.yaml; do
  out="$work/rendered-$(basename "$room")"
  if grep -q '^kind: StatefulSet' "$out"; then
    echo "error: $room rendered a Redis StatefulSet although its Redis is external" >&2; exit 1
  fi
  # the line after the password variable's name must be a valueFrom, never a value
  if ! grep -A1 -- '- name: HUBBUB_REDIS_PASSWORD' "$out" | grep -q 'valueFrom:'; then
    echo "error: $room: HUBBUB_REDIS_PASSWORD is not taken from a Secret:" >&2
    grep -A4 -- '- name: HUBBUB_REDIS_PASSWORD' "$out" >&2; exit 1
  fi
  echo "ok    $room: no Redis StatefulSet, HUBBUB_REDIS_PASSWORD from a secretKeyRef"
done

echo "==> the Sentinel-managed Redis: its start-up scripts pass shellcheck"
ensure_apt shellcheck shellcheck
mkdir -p "$work/scripts"
tests/k8s/.venv/bin/python - "$work/rendered-chatroom-ha-redis.yaml" "$work/scripts" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
found = 0
for d in docs:
    if d["kind"] != "StatefulSet":
        continue
    for c in d["spec"]["template"]["spec"]["containers"]:
        cmd = c.get("command") or []
        if cmd[:2] == ["sh", "-c"]:
            with open(f"{sys.argv[2]}/{d['metadata']['name']}.sh", "w") as f:
                f.write("#!/bin/sh\n" + cmd[2])
            found += 1
if found != 2:
    sys.exit(f"expected the data and the Sentinel start-up scripts, found {found}")
PY
shellcheck -s sh "$work"/scripts/*.sh
echo "ok    $(cd "$work/scripts" && echo *.sh) pass shellcheck"

echo "==> validating against Kubernetes $K8S_VERSION schemas and the ChatRoom CRD"
tests/k8s/.venv/bin/python tests/k8s/validate.py \
  --kubernetes-version "$K8S_VERSION" \
  --crd k8s/crd.yaml \
  --manifests k8s/*.yaml "${rendered[@]}" \
  --valid-rooms k8s/examples/*.yaml tests/k8s/valid/*.yaml \
  --invalid-rooms tests/k8s/invalid/*.yaml \
  --invalid-manifests tests/k8s/invalid-manifests/*.yaml

echo "==> tests/e2e (runs only against a real cluster): static checks"
ensure_apt shellcheck shellcheck
shellcheck -x tests/e2e/run.sh scripts/test scripts/lib.sh scripts/test.d/*.sh bench/*.sh
echo "ok    tests/e2e/run.sh, scripts/ and bench/ pass shellcheck"

echo "==> tests/e2e/chat.mjs against a local hubbub-server (both 'pods' are the same server here)"
ensure_npm tests/e2e
cargo build --locked --quiet -p hubbub-server
HUBBUB_BIND=127.0.0.1:0 HUBBUB_LOG=info HUBBUB_LOG_FORMAT=json \
  "${CARGO_TARGET_DIR:-target}/debug/hubbub-server" > "$work/server.log" 2>&1 &
server_pid=$!
# the server logs the address it bound (port 0: the kernel chose it)
line=$(timeout 60 tail -n +1 -F "$work/server.log" 2>/dev/null | grep -m1 '"hubbub-server listening"' || true)
addr=$(printf '%s' "$line" | sed -n 's/.*"addr":"\([0-9.:]*\)".*/\1/p')
[ -n "$addr" ] || { echo "error: hubbub-server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
node tests/e2e/chat.mjs "http://$addr" "http://$addr"
