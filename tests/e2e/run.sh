#!/usr/bin/env bash
# End-to-end test of hubbub-operator on a real Kubernetes cluster (kind or k3d).
# It cannot run on the development machines (no container engine, no cluster); run it
# on a workstation or a CI runner with Docker:
#
#   tests/e2e/run.sh                      # creates a kind cluster "hubbub-e2e", deletes it after
#   HUBBUB_E2E_TOOL=k3d tests/e2e/run.sh  # the same with k3d
#   HUBBUB_E2E_TOOL=existing tests/e2e/run.sh   # the current kubectl context, image already pullable
#
# Settings (environment): HUBBUB_E2E_TOOL=kind|k3d|existing (default kind),
# HUBBUB_E2E_CLUSTER (default hubbub-e2e), HUBBUB_E2E_IMAGE (default hubbub:e2e; built
# from the Dockerfile unless HUBBUB_E2E_SKIP_BUILD=1), HUBBUB_E2E_KEEP=1 keeps the
# cluster and namespace for debugging.
#
# Steps: build and load the image; install the CRD and the operator from k8s/ (two
# replicas, one leader); check that the API server rejects the invalid example
# ChatRooms (schema and CEL); apply a ChatRoom and wait for Ready; chat through
# port-forwards to two different server pods with the official socket.io-client
# (cross-replica delivery, shared history, presence); scale with `kubectl scale`; check
# that hand-made drift is repaired and optional children come and go with the spec;
# check Ready=False for an unreconcilable spec; delete the ChatRoom and check that every
# child is garbage-collected.
set -euo pipefail
cd "$(dirname "$0")/../.."

TOOL=${HUBBUB_E2E_TOOL:-kind}
CLUSTER=${HUBBUB_E2E_CLUSTER:-hubbub-e2e}
IMAGE=${HUBBUB_E2E_IMAGE:-hubbub:e2e}
KEEP=${HUBBUB_E2E_KEEP:-0}
NS=hubbub-e2e
OPNS=hubbub-system
TIMEOUT=300s
created_cluster=0
forward_pids=()

step() { echo "==> $*"; }
ok() { echo "ok    $*"; }

dump() {
  echo "---- diagnostics ----" >&2
  kubectl get chatroom,deploy,sts,svc,pdb,ingress,hpa,pods -n "$NS" -o wide >&2 || true
  kubectl describe chatroom -n "$NS" >&2 || true
  kubectl get events -n "$NS" --sort-by=.lastTimestamp >&2 || true
  kubectl logs -n "$OPNS" -l app.kubernetes.io/name=hubbub-operator --tail=200 --prefix >&2 || true
}

fail() {
  echo "FAIL  $*" >&2
  dump
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is required: $2" >&2; exit 1; }
}

cleanup() {
  for pid in "${forward_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 1 ]; then
    echo "keeping cluster $CLUSTER and namespace $NS (HUBBUB_E2E_KEEP=1)"
    return
  fi
  kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  if [ "$created_cluster" = 1 ]; then
    case "$TOOL" in
      kind) kind delete cluster --name "$CLUSTER" || true ;;
      k3d) k3d cluster delete "$CLUSTER" || true ;;
    esac
  fi
}
trap cleanup EXIT

need kubectl "https://kubernetes.io/docs/tasks/tools/ (1.31 or newer, for 'kubectl wait --for=create')"
need node "Node.js 18 or newer"
need npm "npm (comes with Node.js)"
need curl "curl"
case "$TOOL" in
  kind) need kind "https://kind.sigs.k8s.io/"; need docker "a container engine for kind" ;;
  k3d) need k3d "https://k3d.io/"; need docker "a container engine for k3d" ;;
  existing) ;;
  *) echo "error: HUBBUB_E2E_TOOL must be kind, k3d or existing" >&2; exit 1 ;;
esac

# ---- cluster and image --------------------------------------------------------------
case "$TOOL" in
  kind)
    if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
      step "creating kind cluster $CLUSTER"
      kind create cluster --name "$CLUSTER" --wait 180s
      created_cluster=1
    fi
    kubectl config use-context "kind-$CLUSTER" >/dev/null
    ;;
  k3d)
    if ! k3d cluster list "$CLUSTER" >/dev/null 2>&1; then
      step "creating k3d cluster $CLUSTER"
      k3d cluster create "$CLUSTER" --agents 1 --wait
      created_cluster=1
    fi
    kubectl config use-context "k3d-$CLUSTER" >/dev/null
    ;;
esac

if [ "$TOOL" != existing ] && [ "${HUBBUB_E2E_SKIP_BUILD:-0}" != 1 ]; then
  step "building $IMAGE from the Dockerfile"
  docker build -t "$IMAGE" .
fi
case "$TOOL" in
  kind) step "loading $IMAGE into kind"; kind load docker-image "$IMAGE" --name "$CLUSTER" ;;
  k3d) step "importing $IMAGE into k3d"; k3d image import "$IMAGE" -c "$CLUSTER" ;;
esac

# ---- install ------------------------------------------------------------------------
step "installing the CRD and the operator (kubectl apply -f k8s/)"
kubectl apply -f k8s/crd.yaml
kubectl wait --for condition=established --timeout=60s crd/chatrooms.hubbub.dev
kubectl apply -f k8s/namespace.yaml -f k8s/rbac.yaml
# the committed manifest names the released image; the test runs the one just built
sed "s#ghcr.io/hubbub-chat/hubbub:[0-9A-Za-z.+-]*#$IMAGE#g" k8s/workload.yaml | kubectl apply -f -
kubectl -n "$OPNS" rollout status deploy/hubbub-operator --timeout="$TIMEOUT" || fail "operator did not roll out"
ok "operator running"

step "exactly one operator replica holds the Lease"
holder=""
for _ in $(seq 60); do
  holder=$(kubectl -n "$OPNS" get lease hubbub-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
  [ -n "$holder" ] && break
  sleep 1
done
[ -n "$holder" ] || fail "no operator replica took the Lease"
kubectl -n "$OPNS" get pod "$holder" >/dev/null || fail "lease holder $holder is not an operator pod"
ok "leader is $holder"

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -

step "the API server rejects the invalid ChatRooms (schema and CEL rules)"
for f in tests/k8s/invalid/*.yaml; do
  if kubectl apply --dry-run=server -n "$NS" -f "$f" >/dev/null 2>&1; then
    fail "the API server accepted $f"
  fi
  ok "rejected $(basename "$f")"
done
kubectl apply --dry-run=server -n "$NS" -f k8s/examples/full.yaml >/dev/null || fail "full example rejected"
ok "accepted k8s/examples/full.yaml (dry run)"

# ---- a ChatRoom ---------------------------------------------------------------------
step "applying k8s/examples/minimal.yaml and waiting for Ready"
kubectl apply -n "$NS" -f k8s/examples/minimal.yaml
kubectl wait -n "$NS" --for=condition=Ready chatroom/lobby --timeout="$TIMEOUT" || fail "lobby never became Ready"
kubectl get room -n "$NS"
ok "lobby is Ready"

step "every child exists and is controlled by the ChatRoom"
uid=$(kubectl get chatroom lobby -n "$NS" -o jsonpath='{.metadata.uid}')
for obj in deployment/lobby statefulset/lobby-redis service/lobby service/lobby-redis poddisruptionbudget/lobby; do
  owner=$(kubectl get "$obj" -n "$NS" -o jsonpath='{.metadata.ownerReferences[?(@.controller==true)].uid}')
  [ "$owner" = "$uid" ] || fail "$obj is not controlled by chatroom/lobby"
  ok "$obj owned by chatroom/lobby"
done
endpoint=$(kubectl get chatroom lobby -n "$NS" -o jsonpath='{.status.endpoint}')
[ "$endpoint" = "http://lobby.$NS.svc.cluster.local" ] || fail "unexpected status.endpoint '$endpoint'"

step "chatting through two different server pods"
mapfile -t pods < <(kubectl get pods -n "$NS" \
  -l app.kubernetes.io/instance=lobby,app.kubernetes.io/component=server \
  --field-selector=status.phase=Running -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
[ "${#pods[@]}" -ge 2 ] || fail "expected 2 running server pods, found ${#pods[@]}"
port=18080
urls=()
for pod in "${pods[0]}" "${pods[1]}"; do
  kubectl port-forward -n "$NS" "pod/$pod" "$port:8080" >/dev/null 2>&1 &
  forward_pids+=($!)
  urls+=("http://127.0.0.1:$port")
  port=$((port + 1))
done
for url in "${urls[@]}"; do
  ready=0
  for _ in $(seq 30); do
    if curl -fsS "$url/readyz" >/dev/null 2>&1; then ready=1; break; fi
    sleep 1
  done
  [ "$ready" = 1 ] || fail "port-forward $url never answered /readyz"
done
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
node tests/e2e/chat.mjs "${urls[0]}" "${urls[1]}" || fail "chat across replicas"
for pid in "${forward_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
forward_pids=()

step "kubectl scale chatroom/lobby --replicas=3"
kubectl scale -n "$NS" chatroom/lobby --replicas=3
kubectl wait -n "$NS" --for=jsonpath='{.spec.replicas}'=3 deploy/lobby --timeout=60s || fail "deployment not scaled"
kubectl -n "$NS" rollout status deploy/lobby --timeout="$TIMEOUT"
kubectl wait -n "$NS" --for=jsonpath='{.status.readyReplicas}'=3 chatroom/lobby --timeout="$TIMEOUT" \
  || fail "status.readyReplicas did not reach 3"
ok "scaled to 3 through the scale subresource"

step "hand-made changes are put back"
kubectl delete service lobby -n "$NS" --wait=true
kubectl wait -n "$NS" --for=create service/lobby --timeout=60s || fail "service/lobby not recreated"
kubectl patch deploy lobby -n "$NS" --type merge -p '{"spec":{"replicas":1}}'
kubectl wait -n "$NS" --for=jsonpath='{.spec.replicas}'=3 deploy/lobby --timeout=60s || fail "replicas not restored"
ok "deleted Service recreated, edited replicas restored"

step "optional children follow the spec"
kubectl patch chatroom lobby -n "$NS" --type merge -p '{"spec":{"ingress":{"host":"lobby.example.com"},"autoscaling":{"minReplicas":2,"maxReplicas":4}}}'
kubectl wait -n "$NS" --for=create ingress/lobby --timeout=60s || fail "ingress not created"
kubectl wait -n "$NS" --for=create hpa/lobby --timeout=60s || fail "hpa not created"
kubectl patch chatroom lobby -n "$NS" --type json -p '[{"op":"remove","path":"/spec/ingress"},{"op":"remove","path":"/spec/autoscaling"}]'
kubectl wait -n "$NS" --for=delete ingress/lobby hpa/lobby --timeout=60s || fail "ingress/hpa not deleted"
ok "ingress and HPA created and deleted with the spec"

step "an unreconcilable spec gives Ready=False with a reason"
kubectl patch chatroom lobby -n "$NS" --type merge -p '{"spec":{"ingress":{"className":"nginx"}}}'
kubectl wait -n "$NS" --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=IngressHostMissing \
  chatroom/lobby --timeout=60s || fail "no IngressHostMissing condition"
kubectl get events -n "$NS" --field-selector reason=IngressHostMissing -o name | grep -q . \
  || fail "no IngressHostMissing event"
kubectl patch chatroom lobby -n "$NS" --type json -p '[{"op":"remove","path":"/spec/ingress"}]'
kubectl wait -n "$NS" --for=condition=Ready chatroom/lobby --timeout="$TIMEOUT" || fail "not Ready again"
ok "Ready=False (IngressHostMissing) with an Event, then Ready again"

step "deleting the ChatRoom collects every child"
kubectl delete chatroom lobby -n "$NS" --wait=true
kubectl wait -n "$NS" --for=delete deploy/lobby sts/lobby-redis service/lobby service/lobby-redis pdb/lobby \
  --timeout=120s || fail "children not garbage-collected"
left=$(kubectl get pods -n "$NS" -l app.kubernetes.io/instance=lobby -o name)
for _ in $(seq 60); do
  [ -z "$left" ] && break
  sleep 2
  left=$(kubectl get pods -n "$NS" -l app.kubernetes.io/instance=lobby -o name)
done
[ -z "$left" ] || fail "pods left behind: $left"
ok "everything collected"

echo "==> e2e passed"
