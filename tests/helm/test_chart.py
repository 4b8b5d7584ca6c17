"""Tests of the Helm chart charts/hubbub, rendered and linted offline with the Helm v4 SDK
(helm-python-sdk) and checked against the official Kubernetes JSON schemas
(kubernetes-validate), the ChatRoom CRD, and the repository's k8s/ manifests.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import (
    CHART_DIR,
    NAMESPACE,
    ROOT,
    ci_values_files,
    find,
    load_values,
    objects_of,
    without_origin,
)

sys.path.insert(0, str(Path(__file__).parent))
import sync_values_schema  # noqa: E402

# Kubernetes versions every rendered object must be valid for: the chart's
# kubeVersion floor and the version k8s-openapi is built for.
KUBERNETES_VERSIONS = ["1.28.0", "1.34.0"]
VALUES_SETS = [None] + ci_values_files()
VALUES_IDS = ["chart-defaults"] + [p.name for p in ci_values_files()]
CRD_FILE = CHART_DIR / "crds" / "chatrooms.hubbub.dev.yaml"
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())

# The operator's permissions, as (apiGroup, resource, verb) triples: the same as k8s/.
EXPECTED_RBAC = {
    *(("hubbub.dev", "chatrooms", v) for v in ["get", "list", "watch", "patch", "update"]),
    *(("hubbub.dev", "chatrooms/status", v) for v in ["get", "patch", "update"]),
    ("hubbub.dev", "chatrooms/finalizers", "update"),
    *(
        (group, resource, verb)
        for group, resource in [
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("", "services"),
            ("networking.k8s.io", "ingresses"),
            ("policy", "poddisruptionbudgets"),
            ("autoscaling", "horizontalpodautoscalers"),
        ]
        for verb in ["get", "list", "watch", "create", "patch", "update", "delete"]
    ),
    *((group, "events", v) for group in ["", "events.k8s.io"] for v in ["create", "patch"]),
    *(("coordination.k8s.io", "leases", v) for v in ["get", "list", "watch", "create", "update", "patch"]),
}

# The parts of the Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1) that
# the chart uses, written from its API reference; any other field fails the test.
DURATION = {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                        },
                    },
                },
            },
        },
    },
}


# The parts of the Prometheus Operator's PrometheusRule (monitoring.coreos.com/v1) that the
# chart uses, written from its API reference; any other field fails the test.
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": DURATION,
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
DASHBOARD_FILE = CHART_DIR / "files" / "hubbub-dashboard.json"
RULES_FILE = CHART_DIR / "files" / "hubbub.rules.yaml"


def values_of(path: Path | None) -> dict[str, Any]:
    return {} if path is None else load_values(path)


def chatroom_schema() -> dict[str, Any]:
    """The CRD's openAPIV3Schema for ChatRoom, strict (unknown fields rejected)."""
    (crd,) = [d for d in yaml.safe_load_all(CRD_FILE.read_text()) if d]
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema = sync_values_schema.strict_from_crd(version["schema"]["openAPIV3Schema"])
    # apiVersion/kind/metadata are checked by the API server, not the CRD's schema.
    schema["properties"].update({"apiVersion": {"const": "hubbub.dev/v1alpha1"}, "kind": {"const": "ChatRoom"}, "metadata": {"type": "object"}})
    return schema


def validate_object(obj: dict[str, Any]) -> None:
    """Validate one rendered object against the schema of its kind (raises on failure)."""
    body = without_origin(obj)
    if body["apiVersion"] == "hubbub.dev/v1alpha1":
        jsonschema.validate(body, chatroom_schema())
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": body["metadata"]}, KUBERNETES_VERSIONS[-1], strict=True
        )  # metadata against ObjectMeta
    elif body["apiVersion"] == "monitoring.coreos.com/v1":
        jsonschema.validate(body, {"ServiceMonitor": SERVICE_MONITOR_SCHEMA, "PrometheusRule": PROMETHEUS_RULE_SCHEMA}[body["kind"]])
    else:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(body, version, strict=True)


# ---------------------------------------------------------------------------------------
# Lint and render every values set.


@pytest.mark.parametrize("values_file", VALUES_SETS, ids=VALUES_IDS)
def test_strict_lint_reports_no_errors_or_warnings(values_file):
    report = helm_python.lint(CHART_DIR, values_of(values_file), strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


@pytest.mark.parametrize("values_file", VALUES_SETS, ids=VALUES_IDS)
def test_every_rendered_object_is_valid_for_kubernetes(render, values_file):
    objects, _ = render(values_of(values_file))
    assert objects, "the chart rendered nothing"
    failures = []
    for obj in objects:
        try:
            validate_object(obj)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as err:
            failures.append(f"{obj['__template__']}: {obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, err.path))}: {err.message}")
    assert failures == []


@pytest.mark.parametrize("values_file", VALUES_SETS, ids=VALUES_IDS)
def test_objects_carry_standard_labels_and_namespaces(render, values_file):
    objects, _ = render(values_of(values_file))
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", obj["metadata"]["name"]
        assert labels.get("app.kubernetes.io/instance") == "hubbub"
        assert labels.get("helm.sh/chart") == "hubbub-0.1.0"
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"].get("namespace"), f"{obj['kind']} {obj['metadata']['name']} has no namespace"


@pytest.mark.parametrize("release", ["hubbub", "x" * 53, "chat-" + "y" * 48])
def test_object_names_are_dns_labels_for_any_release_name(chart, release):
    """Helm allows release names of 53 characters; every name must stay a DNS label (<= 63)."""
    values = load_values(CHART_DIR / "ci" / "all-options-values.yaml")
    values.pop("fullnameOverride")
    manifests = chart.render(values, name=release, namespace=NAMESPACE, is_install=True)
    names = [o["metadata"]["name"] for o in objects_of(manifests)]
    assert len(names) >= 10
    bad = [n for n in names if len(n) > 63 or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", n)]
    assert bad == []


def test_ci_values_sets_cover_defaults_every_option_and_production():
    names = {p.name for p in ci_values_files()}
    assert {"default-values.yaml", "all-options-values.yaml", "production-values.yaml"} <= names


def test_all_options_values_switch_every_toggle_on_and_render_every_template(chart, render):
    values = load_values(CHART_DIR / "ci" / "all-options-values.yaml")
    merged = chart.merge_values(values)

    def booleans(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from booleans(value, f"{path}.{key}")
        elif isinstance(node, bool):
            yield path, node

    # The chart's own switches; Kubernetes types (security contexts) keep their meaning.
    chart_switches = [(path, on) for path, on in booleans(merged) if "ecurityContext." not in path]
    assert len(chart_switches) >= 7
    assert [path for path, on in chart_switches if not on] == []
    _, manifests = render(values)
    templates = {t["name"] for t in chart.templates if not t["name"].endswith((".tpl", ".txt"))}
    empty = [t for t in templates if not manifests.get(f"hubbub/{t}", "").strip()]
    assert empty == []


# ---------------------------------------------------------------------------------------
# What the chart installs.


def test_crd_in_chart_is_byte_identical_to_k8s_crd_yaml():
    assert CRD_FILE.read_bytes() == (ROOT / "k8s" / "crd.yaml").read_bytes()


def test_crd_is_a_valid_chatroom_customresourcedefinition(chart):
    crds = chart.crds
    assert [c["filename"] for c in crds] == ["hubbub/crds/chatrooms.hubbub.dev.yaml"]
    docs = [d for d in yaml.safe_load_all(CRD_FILE.read_text()) if d]
    assert len(docs) == 1
    crd = docs[0]
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(crd, version, strict=True)
    assert crd["metadata"]["name"] == "chatrooms.hubbub.dev"
    assert crd["spec"]["group"] == "hubbub.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("ChatRoom", "chatrooms", ["room"])
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"]


def test_default_install_is_the_operator_with_least_privilege_rbac(render):
    objects, _ = render({})
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("ClusterRole", "hubbub-operator"),
        ("ClusterRoleBinding", "hubbub-operator"),
        ("Deployment", "hubbub-operator"),
        ("Service", "hubbub-operator-metrics"),
        ("ServiceAccount", "hubbub-operator"),
    ]
    (role,) = find(objects, "ClusterRole")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == EXPECTED_RBAC
    assert all("*" not in rule["verbs"] and "*" not in rule["resources"] for rule in role["rules"])
    (binding,) = find(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hubbub-operator", "namespace": NAMESPACE}]


def test_chart_rbac_matches_the_k8s_manifests(render):
    """k8s/ (plain `kubectl apply -f k8s/`) and the chart grant the operator the same rights."""
    k8s_roles = [
        d
        for path in sorted((ROOT / "k8s").glob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if d and d.get("kind") == "ClusterRole"
    ]
    assert len(k8s_roles) == 1, "k8s/ must hold the operator's ClusterRole"
    want = {(g, r, v) for rule in k8s_roles[0]["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    (role,) = find(render({})[0], "ClusterRole")
    got = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert got == want


def test_operator_deployment_passes_images_and_settings(render):
    objects, _ = render({})
    (deployment,) = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert container["image"] == "ghcr.io/hubbub-chat/hubbub:0.1.0"
    assert container["command"] == ["/usr/local/bin/hubbub-operator"]
    assert container["args"] == ["run", "--lease-name=hubbub-operator"]
    assert env == {
        "POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "HUBBUB_OPERATOR_SERVER_IMAGE": "ghcr.io/hubbub-chat/hubbub:0.1.0",
        "HUBBUB_OPERATOR_REDIS_IMAGE": "redis:7.2",
        "HUBBUB_OPERATOR_METRICS_BIND": "0.0.0.0:9090",
        "HUBBUB_OPERATOR_LEADER_ELECTION": "true",
        "HUBBUB_LOG": "info",
        "HUBBUB_LOG_FORMAT": "json",
    }
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert pod["serviceAccountName"] == "hubbub-operator"
    # Pod Security Standard "restricted".
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"] == "256Mi"


def test_image_digest_and_tag_overrides(render):
    digest = "sha256:" + "ab" * 32
    objects, _ = render(
        {
            "operator": {"image": {"repository": "r.example/op", "tag": "9.9.9"}},
            "server": {"image": {"digest": digest}},
            "redis": {"image": {"repository": "mirror/redis", "tag": "7.4"}},
        }
    )
    (container,) = find(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == "r.example/op:9.9.9"
    assert env["HUBBUB_OPERATOR_SERVER_IMAGE"] == f"ghcr.io/hubbub-chat/hubbub@{digest}"
    assert env["HUBBUB_OPERATOR_REDIS_IMAGE"] == "mirror/redis:7.4"


def test_without_leader_election_one_operator_is_replaced_not_rolled(render):
    objects, _ = render({"operator": {"leaderElection": False}})
    (deployment,) = find(objects, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HUBBUB_OPERATOR_LEADER_ELECTION"] == "false"


def test_several_operators_without_leader_election_are_refused(render):
    with pytest.raises(helm_python.HelmRenderError, match="leaderElection"):
        render({"operator": {"leaderElection": False, "replicaCount": 2}})


def test_set_rooms_lobby_creates_a_chatroom_and_a_handshake_test(render):
    values = helm_python.parse_set_string("rooms[0].name=lobby")
    objects, manifests = render(values)
    (room,) = find(objects, "ChatRoom")
    assert room["apiVersion"] == "hubbub.dev/v1alpha1"
    assert room["metadata"]["name"] == "lobby"
    assert room["metadata"]["namespace"] == NAMESPACE
    assert room["spec"] == {}
    (pod,) = find(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert 'check "lobby.chat.svc:80"' in script
    assert "/socket.io/?EIO=4&transport=polling" in script
    assert "0\\{*" in script  # the Engine.IO open packet
    assert "kubectl -n chat port-forward service/lobby 8080:80" in manifests["hubbub/templates/NOTES.txt"]


def test_handshake_test_script_accepts_an_open_packet_and_nothing_else(render, tmp_path):
    """Run the hook's shell script with a fake wget, as the test pod would."""
    import os
    import subprocess

    objects, _ = render(helm_python.parse_set_string("rooms[0].name=lobby,tests.timeoutSeconds=1"))
    script = find(objects, "Pod")[0]["spec"]["containers"][0]["command"][-1]
    fake = tmp_path / "wget"
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    for answer, ok in [
        ('0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}', True),
        ('{"code":0,"message":"Transport unknown"}', False),
        ("", False),
    ]:
        fake.write_text(f"#!/bin/sh\nprintf '%s' '{answer}'\n")
        fake.chmod(0o755)
        result = subprocess.run(["sh", "-c", script.replace("sleep 2", "sleep 0.1")], env=env, capture_output=True, text=True, timeout=30)
        assert (result.returncode == 0) == ok, (answer, result.stdout)


@pytest.fixture(scope="module")
def hubbub_server():
    """A real hubbub-server (debug build of this repository) on a free loopback port."""
    import os
    import shutil
    import socket
    import subprocess
    import threading

    cargo = shutil.which("cargo")
    assert cargo, "cargo is needed to build hubbub-server for this test (install Rust: https://rustup.rs)"
    subprocess.run([cargo, "build", "--locked", "-q", "--bin", "hubbub-server"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, HUBBUB_BIND=f"127.0.0.1:{port}", HUBBUB_LOG_FORMAT="text", NO_COLOR="1")
    server = subprocess.Popen(
        [target / "debug" / "hubbub-server"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    listening = threading.Event()
    log: list[str] = []

    def drain():  # keeps the pipe empty and signals the server's "listening" log line
        for line in server.stdout:
            log.append(line)
            if "listening" in line:
                listening.set()
        listening.set()  # exited

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert listening.wait(timeout=60), "hubbub-server did not log 'listening' within 60 s"
        assert server.poll() is None, "hubbub-server exited before listening:\n" + "".join(log)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_handshake_hook_passes_against_a_real_hubbub_server(render, hubbub_server):
    """The hook's script, with wget, against hubbub-server itself instead of the room's Service."""
    import subprocess

    objects, _ = render(helm_python.parse_set_string("rooms[0].name=lobby,tests.timeoutSeconds=20"))
    script = find(objects, "Pod")[0]["spec"]["containers"][0]["command"][-1]
    service_check = 'check "lobby.chat.svc:80"'
    assert service_check in script
    assert subprocess.run(["wget", "--version"], capture_output=True).returncode == 0, "install wget (apt-get install wget)"
    result = subprocess.run(
        ["sh", "-c", script.replace(service_check, f'check "{hubbub_server}"')], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"ok: http://{hubbub_server}/socket.io/?EIO=4&transport=polling answered 0{{")


def test_rooms_carry_their_spec_namespace_labels_and_annotations(render):
    spec = {"replicas": 3, "welcome": "hi", "history": {"messages": 50, "questions": 5}, "ingress": {"host": "chat.example.com"}}
    objects, manifests = render(
        {"rooms": [{"name": "lobby", "namespace": "other", "labels": {"tier": "gold"}, "annotations": {"a": "b"}, "spec": spec}]}
    )
    (room,) = find(objects, "ChatRoom")
    assert room["metadata"]["namespace"] == "other"
    assert room["metadata"]["labels"]["tier"] == "gold"
    assert room["metadata"]["annotations"] == {"a": "b"}
    assert room["spec"] == spec
    assert "lobby: http://chat.example.com/" in manifests["hubbub/templates/NOTES.txt"]


def test_duplicate_rooms_are_refused(render):
    with pytest.raises(helm_python.HelmRenderError, match="listed twice"):
        render({"rooms": [{"name": "lobby"}, {"name": "lobby"}]})


def test_service_monitors_select_the_operator_and_the_rooms(render):
    objects, _ = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    (monitor,) = find(objects, "ServiceMonitor", "hubbub-operator")
    (service,) = find(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    (deployment,) = find(objects, "Deployment")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # The rooms' chat servers: the operator labels each room's Service so, port "http".
    (rooms,) = find(objects, "ServiceMonitor", "hubbub-rooms")
    assert rooms["metadata"]["labels"]["release"] == "prom"
    assert rooms["spec"]["namespaceSelector"] == {"any": True}
    assert rooms["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "hubbub-operator",
        "app.kubernetes.io/component": "server",
    }
    assert [(e["port"], e["path"]) for e in rooms["spec"]["endpoints"]] == [("http", "/metrics")]
    objects, _ = render({"metrics": {"serviceMonitor": {"enabled": True, "rooms": False}}})
    assert [m["metadata"]["name"] for m in find(objects, "ServiceMonitor")] == ["hubbub-operator"]
    objects, _ = render({"metrics": {"scrapeAnnotations": False}})
    assert "annotations" not in find(objects, "Service")[0]["metadata"]


def test_rooms_service_monitor_labels_series_with_the_chatroom(render):
    """The dashboard and the alerts select a room by app_kubernetes_io_instance: the pod label
    the operator sets, copied onto the series by podTargetLabels."""
    objects, _ = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    (rooms,) = find(objects, "ServiceMonitor", "hubbub-rooms")
    assert rooms["spec"]["podTargetLabels"] == ["app.kubernetes.io/instance", "app.kubernetes.io/name", "app.kubernetes.io/component"]


def test_dashboard_configmap_is_opt_in_and_carries_the_sidecar_label(render):
    objects, _ = render({})
    assert find(objects, "ConfigMap") == []
    objects, _ = render({"metrics": {"dashboards": {"enabled": True, "annotations": {"grafana_folder": "hubbub"}}}})
    (configmap,) = find(objects, "ConfigMap", "hubbub-dashboard")
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "hubbub"}
    assert list(configmap["data"]) == ["hubbub.json"]
    assert json.loads(configmap["data"]["hubbub.json"]) == json.loads(DASHBOARD_FILE.read_text())
    objects, _ = render({"metrics": {"dashboards": {"enabled": True, "namespace": "grafana", "labels": {"team": "chat"}}}})
    (configmap,) = find(objects, "ConfigMap")
    assert configmap["metadata"]["namespace"] == "grafana"
    # labels merge with the default (Helm merges maps); null removes the sidecar's default label
    assert configmap["metadata"]["labels"]["team"] == "chat"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    objects, _ = render({"metrics": {"dashboards": {"enabled": True, "labels": {"grafana_dashboard": None, "dash": "yes"}}}})
    (configmap,) = find(objects, "ConfigMap")
    assert "grafana_dashboard" not in configmap["metadata"]["labels"]
    assert configmap["metadata"]["labels"]["dash"] == "yes"


def test_prometheus_rule_is_opt_in_and_holds_the_plain_rules_file(render):
    objects, _ = render({})
    assert find(objects, "PrometheusRule") == []
    objects, _ = render({"metrics": {"prometheusRule": {"enabled": True, "namespace": "monitoring", "labels": {"release": "prom"}}}})
    (rule,) = find(objects, "PrometheusRule", "hubbub")
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "prom"
    # the same groups as the plain rules file, {{ $labels }} templates passed through untouched
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "HubbubChatRoomNotReady" in alerts
    assert all("{{ $labels." in r["annotations"]["summary"] or "{{ $value" in r["annotations"]["summary"] for g in rule["spec"]["groups"] for r in g["rules"])


def test_notes_explain_creating_watching_and_reaching_a_room(render):
    _, manifests = render({})
    notes = manifests["hubbub/templates/NOTES.txt"]
    assert "kind: ChatRoom" in notes
    assert "kubectl get rooms" in notes
    assert "port-forward service/lobby 8080:80" in notes
    assert "http://localhost:8080/" in notes
    assert "spec.ingress.host" in notes


# ---------------------------------------------------------------------------------------
# values.yaml and values.schema.json.

WRONG_VALUES = {
    "unknown top-level key": {"replicaCount": 2},
    "unknown nested key (typo)": {"operator": {"leaderElections": False}},
    "negative replica count": {"operator": {"replicaCount": -1}},
    "replica count of the wrong type": {"operator": {"replicaCount": "two"}},
    "boolean of the wrong type": {"rbac": {"create": "yes"}},
    "unknown log format": {"operator": {"log": {"format": "xml"}}},
    "malformed image digest": {"operator": {"image": {"digest": "latest"}}},
    "room without a name": {"rooms": [{"spec": {}}]},
    "room name that is not a DNS label": {"rooms": [{"name": "Lobby_1"}]},
    "room name too long for its children": {"rooms": [{"name": "a" * 47}]},
    "unknown room key": {"rooms": [{"name": "lobby", "replicas": 2}]},
    "unknown room spec field": {"rooms": [{"name": "lobby", "spec": {"replica": 2}}]},
    "negative room replicas": {"rooms": [{"name": "lobby", "spec": {"replicas": -1}}]},
    "room spec field of the wrong type": {"rooms": [{"name": "lobby", "spec": {"history": {"messages": "many"}}}]},
    "unknown field in a Kubernetes type": {"operator": {"securityContext": {"runAsNonroot": True}}},
    "toleration with an unknown field": {"operator": {"tolerations": [{"key": "a", "efect": "NoSchedule"}]}},
    "bad ServiceMonitor interval": {"metrics": {"serviceMonitor": {"interval": "often"}}},
    "dashboards switch of the wrong type": {"metrics": {"dashboards": {"enabled": "yes"}}},
    "unknown dashboards key": {"metrics": {"dashboards": {"enabled": True, "folder": "hubbub"}}},
    "dashboard label that is not a string": {"metrics": {"dashboards": {"labels": {"grafana_dashboard": 1}}}},
    "unknown prometheusRule key": {"metrics": {"prometheusRule": {"enabled": True, "severity": "page"}}},
    "prometheusRule namespace that is not a DNS label": {"metrics": {"prometheusRule": {"namespace": "Monitoring"}}},
}


@pytest.mark.parametrize("values", WRONG_VALUES.values(), ids=WRONG_VALUES.keys())
def test_schema_rejects_wrong_values(chart, render, values):
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


@pytest.mark.parametrize(
    "expression",
    ["operator.replicaCount=-1", "operatr.replicaCount=1", "operator.leaderElection=maybe", "rooms[0].name=lobby,rooms[0].spec.replicas=0"],
)
def test_mistyped_set_fails_at_install(render, expression):
    with pytest.raises(helm_python.HelmValuesError):
        render(helm_python.parse_set_string(expression))


def test_schema_is_valid_draft_07():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def object_nodes(node: Any, path: str = "$"):
    """Every schema node that describes an object, with its path."""
    if isinstance(node, dict):
        types = node.get("type")
        if types == "object" or (isinstance(types, list) and "object" in types) or "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from object_nodes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from object_nodes(item, f"{path}[{i}]")


def test_schema_closes_every_object():
    """additionalProperties is false on every object with fixed properties; free-form maps
    (labels, annotations, node selectors, resource lists) say what their values are."""
    offenders = []
    for path, node in object_nodes(SCHEMA):
        extra = node.get("additionalProperties")
        if "properties" in node and extra is not False:
            offenders.append(path)
        elif "properties" not in node and not isinstance(extra, dict):
            offenders.append(path)
    assert offenders == []


def test_schema_definitions_are_in_sync_with_kubernetes_and_the_crd():
    assert sync_values_schema.main(["--check"]) == 0


def yaml_keys(text: str):
    """(indent, key, line number) of every mapping key in values.yaml, ignoring comments."""
    for number, line in enumerate(text.splitlines()):
        match = re.match(r"^(\s*)(?:- )?([A-Za-z][A-Za-z0-9_.-]*):(\s|$)", line)
        if match:
            yield len(match.group(1)), match.group(2), number


def test_every_value_is_documented_by_a_comment_starting_with_its_name():
    """Each key in values.yaml sits under a comment block whose first line is `# <key>...`."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented = []
    for _, key, number in yaml_keys("\n".join(lines)):
        start = number
        while start > 0 and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        if start == number or not re.match(rf"^# {re.escape(key)}(:|\s|$)", lines[start].strip()):
            undocumented.append(f"line {number + 1}: {key}")
    assert undocumented == []


def schema_paths(node: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of the fixed properties in the hand-written schema (not below arrays or definitions)."""
    paths = set()
    for key, sub in node.get("properties", {}).items():
        paths.add(prefix + key)
        if sub.get("type") == "object" and "properties" in sub:
            paths |= schema_paths(sub, prefix + key + ".")
    return paths


def values_paths(node: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in node.items():
        paths.add(prefix + key)
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in sub:
            paths |= values_paths(value, sub, prefix + key + ".")
    return paths


def test_values_yaml_and_schema_describe_the_same_values(chart):
    assert values_paths(chart.values, SCHEMA) == schema_paths(SCHEMA)


def test_default_values_pass_the_schema(chart):
    chart.validate_schema(chart.values)


# ---------------------------------------------------------------------------------------
# Chart metadata.


def test_chart_version_follows_the_crate(chart, cargo_manifest):
    version = cargo_manifest["package"]["version"]
    assert chart.metadata["version"] == version
    assert chart.metadata["appVersion"] == version
    assert chart.metadata["apiVersion"] == "v2"
    assert chart.metadata["kubeVersion"] == ">=1.28.0-0"


def test_crd_schemas_are_made_strict_for_values():
    """sync_values_schema turns a CRD structural schema into a strict values schema."""
    crd_node = {
        "type": "object",
        "properties": {
            "size": {"x-kubernetes-int-or-string": True},
            "image": {"type": "string", "nullable": True},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "env": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
    }
    strict = sync_values_schema.strict_from_crd(crd_node)
    assert strict == {
        "type": "object",
        "properties": {
            "size": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "image": {"type": ["string", "null"]},
            "free": {"type": "object", "additionalProperties": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "env": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": False}},
        },
        "additionalProperties": False,
    }
