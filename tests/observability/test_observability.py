"""Tests of hubbub's Grafana dashboard and alerting rules (charts/hubbub/files/) with the
real tools: promtool (check and unit tests), Grafana's dashboard model (the
grafana-foundation-sdk package), a real Prometheus evaluating every query and rule against
real hubbub-server replicas (two on Redis, forwarding each other's requests; two on RabbitMQ
alone) and a hubbub-operator, and their real /metrics output.

Run through scripts/test.d/50-observability.sh, which installs the tools and builds the
binaries.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import conftest
import dashboard as dashboard_source
from conftest import DASHBOARD, ROOT, RULES, tool

HERE = Path(__file__).parent
RULES_TESTS = HERE / "hubbub.rules.test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Metrics the dashboard and the rules may use before a binary exports them (a back end
# being added in parallel): exempt from "exists in /metrics", and the test fails as soon as
# one appears in the real output. Empty: every name the dashboard and the rules use is
# checked against a live server (the RabbitMQ ones against the `relay` replicas, the
# forwarding ones against a replica that really forwarded).
PENDING_METRICS: set[str] = set()
# Series Prometheus itself makes for every target (not in any /metrics output).
PROMETHEUS_SERIES = {"up"}
# Exported metrics the dashboard deliberately leaves out (not worth a panel).
# hubbub_tasks_alive: a leak detector for soaks (docs/reliability.md), not an operations panel.
# hubbub_amqp_peers: the replicas a RabbitMQ replica hears; "Replicas scraped" shows the
# same from Prometheus' side, and a replica cut off from the broker shows as link down.
NOT_ON_THE_DASHBOARD = {"process_start_time_seconds", "process_threads", "process_virtual_memory_bytes", "hubbub_tasks_alive", "hubbub_amqp_peers"}
# Label names the binaries may use: all from small fixed sets (README, Operations).
SERVER_LABEL_NAMES = {"transport", "reason", "event", "connection", "op", "kind", "result", "shard", "le"}
OPERATOR_LABEL_NAMES = {"result", "reason", "condition", "le"}
# Grafana's variables and the values the tests substitute for them.
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$namespace": ".*", "$chatroom": ".*"}

PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (promtool has checked that it parses):
    identifiers outside strings, label matchers, ranges and grouping clauses that are not
    function calls or keywords."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("(") or match.group(0) in PROMQL_KEYWORDS:
            continue
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # the exponent or unit of a number
        names.add(match.group(0))
    return names


def test_metric_name_extraction():
    expr = 'histogram_quantile(0.99, sum by (le, pod) (rate(a_bucket{x="b{c}", y=~"$v"}[5m]))) > 1e3 and on (pod) max without (z) (b) or c offset 5m unless up == bool 0'
    assert metric_names(expr) == {"a_bucket", "b", "c", "up"}


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every query in the dashboard."""
    return [(p["title"], t["expr"]) for p in load_dashboard()["panels"] for t in p.get("targets", [])]


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def all_exprs() -> list[tuple[str, str]]:
    return [(f"panel {title!r}", substitute(e)) for title, e in dashboard_exprs()] + [(f"alert {r['alert']}", r["expr"]) for r in rules()]


def exported_names(text: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool", "prometheus"), *args], capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------
# Rules: promtool.


def test_rules_file_passes_promtool_check_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_rules_pass_their_promtool_unit_tests():
    result = promtool("test", "rules", str(RULES_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_unit_tests_firing_and_not_firing():
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    firing, silent = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {r["alert"] for r in rules()}
    assert alerts == {
        "HubbubReplicaNotReady",
        "HubbubBackendDown",
        "HubbubPubSubLagHigh",
        "HubbubSlowConsumerDisconnectsSurging",
        "HubbubRecoveryFailing",
        "HubbubOperatorReconcileFailing",
        "HubbubChatRoomNotReady",
    }
    assert alerts - firing == set(), "alerts never shown firing"
    assert alerts - silent == set(), "alerts never shown not firing"


def test_every_alert_has_severity_summary_description_and_a_runbook_in_operations_md():
    doc = OPERATIONS.read_text()
    sections = dict(re.findall(r"^### (Hubbub\w+)\n(.*?)(?=^##)", doc + "\n## end", flags=re.M | re.S))
    for rule in rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["annotations"]["runbook_url"].endswith(f"docs/operations.md#{name.lower()}")
        assert name in sections, f"docs/operations.md has no '### {name}' section"
        for part in ["**What it means**", "**What to check**", "**What to do**"]:
            assert part in sections[name], f"the runbook of {name} lacks {part}"


# ---------------------------------------------------------------------------------------
# Dashboard: Grafana's model.


def test_dashboard_json_is_generated_from_dashboard_py():
    assert dashboard_source.main(["--check"]) == 0


def test_dashboard_loads_into_grafanas_dashboard_model_without_losing_a_field():
    """grafana-foundation-sdk's models are generated from Grafana's dashboard schema: a
    field they do not know is dropped on the way through, a wrong shape fails."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, RowPanel

    plugins.register_default_plugins()
    original = load_dashboard()
    model = Dashboard.from_json(original)
    assert all(isinstance(p, (Panel, RowPanel)) for p in model.panels)
    again = json.loads(json.dumps(model, cls=JSONEncoder))

    lost = []

    def compare(a, b, path):
        if isinstance(a, dict):
            for key, value in a.items():
                if not isinstance(b, dict) or key not in b:
                    lost.append(f"{path}.{key}")
                else:
                    compare(value, b[key], f"{path}.{key}")
        elif isinstance(a, list):
            if not isinstance(b, list) or len(a) != len(b):
                lost.append(path)
            else:
                for i, (x, y) in enumerate(zip(a, b)):
                    compare(x, y, f"{path}[{i}]")
        elif a != b:
            lost.append(f"{path}: {a!r} became {b!r}")

    compare(original, again, "$")
    assert lost == []


def test_dashboard_layout_ids_datasources_units_and_templating():
    board = load_dashboard()
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["uid"] == "hubbub-overview" and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "chatroom"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "app_kubernetes_io_instance" in variables["chatroom"]["query"]["query"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    cells = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert all(isinstance(pos[k], int) for k in "hwxy") and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"], f"panel {panel['title']!r} has no description"
        assert panel["fieldConfig"]["defaults"]["unit"], f"panel {panel['title']!r} has no unit"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == panel["datasource"]
            server_metrics = {n for n in metric_names(substitute(target["expr"])) if not n.startswith("hubbub_operator_")}
            if server_metrics:  # server series are always selected by namespace and ChatRoom
                assert 'namespace=~"$namespace", app_kubernetes_io_instance=~"$chatroom"' in target["expr"], target["expr"]


def test_dashboard_covers_what_the_issue_asks_for():
    used = {n for _, e in all_exprs() for n in metric_names(e)}
    for name in [
        "hubbub_connections_open", "hubbub_connections_total", "hubbub_disconnects_total", "hubbub_packets_sent_total",
        "hubbub_bytes_sent_total", "hubbub_broadcast_recipients_bucket", "hubbub_broadcast_duration_seconds_bucket",
        "hubbub_outbound_queue_overflows_total", "hubbub_events_rejected_total", "hubbub_redis_connected",
        "hubbub_amqp_connected", "hubbub_redis_reconnects_total", "hubbub_amqp_reconnects_total",
        "hubbub_redis_pubsub_lag_seconds_bucket", "hubbub_recovery_attempts_total", "hubbub_recovery_total",
        "hubbub_forwarded_requests_total", "process_cpu_seconds_total", "process_resident_memory_bytes",
        "hubbub_operator_reconciliations_total", "hubbub_operator_reconcile_failures_total",
        "hubbub_operator_reconcile_duration_seconds_bucket",
    ]:
        assert name in used, name
    rate_limit = [e for t, e in dashboard_exprs() if 'reason="rate_limited"' in e]
    assert rate_limit, "no rate-limit refusals panel"


# ---------------------------------------------------------------------------------------
# PromQL: every expression parses (promtool) and runs (a real Prometheus).


def test_every_dashboard_expression_parses_with_promtool(tmp_path):
    """Each panel query (Grafana variables substituted) as a recording rule, checked by promtool."""
    exprs = [e for _, e in all_exprs()]
    groups = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(groups))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_every_metric_name_exists_in_the_real_metrics_output(stack):
    server = set().union(*(exported_names(stack.metrics(a)) for a in stack.servers + stack.relays))
    operator = exported_names(stack.metrics(stack.operator))
    exported = server | operator
    landed = PENDING_METRICS & exported
    assert landed == set(), f"these metrics exist now: remove them from PENDING_METRICS: {sorted(landed)}"
    up = stack.query('up{job="lobby"}')["result"]
    assert up, "Prometheus has no 'up' series for the server"
    missing = {}
    for where, expr in all_exprs():
        for name in metric_names(expr) - exported - PENDING_METRICS - PROMETHEUS_SERIES:
            missing.setdefault(name, []).append(where)
    assert missing == {}, "metric names in the dashboard or rules that no binary exports"
    used = {n for _, e in all_exprs() for n in metric_names(e)}
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported}
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert families - shown - NOT_ON_THE_DASHBOARD == set(), "exported metrics with no panel"


def test_every_query_and_rule_runs_in_a_real_prometheus(stack):
    empty = []
    for where, expr in all_exprs():
        data = stack.query(expr, path="query_range", start=stack.traffic_started, end=stack.traffic_ended + 5, step=1)
        names = metric_names(expr)
        if where.startswith("panel") and not names & PENDING_METRICS and not data["result"]:
            empty.append(f"{where}: {expr}")
    # with the traffic (chat, rejections, a flood, a slow consumer, a Redis outage) every
    # panel on metrics that exist shows data
    assert empty == []


def test_template_variables_find_the_namespace_and_the_chatroom(stack):
    def label_values(query: str) -> list[str]:
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", query)
        assert match, query
        selector, label = substitute(match.group(1)), match.group(2)
        data = stack.query("", path=f"label/{label}/values", **{"match[]": selector})
        return data

    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert label_values(variables["namespace"]["query"]["query"]) == ["chat"]
    assert label_values(variables["chatroom"]["query"]["query"]) == ["lobby", "relay"]


def test_prometheus_loads_and_evaluates_every_rule(stack):
    groups = stack.query("", path="rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {r["alert"] for r in rules()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"


# ---------------------------------------------------------------------------------------
# Label discipline and series count.


def test_labels_come_from_small_fixed_sets_and_the_series_count_is_documented(stack):
    server_text, operator_text = stack.metrics(stack.server), stack.metrics(stack.operator)
    relay_text = stack.metrics(stack.relays[0])
    for text, allowed in [(server_text, SERVER_LABEL_NAMES), (relay_text, SERVER_LABEL_NAMES), (operator_text, OPERATOR_LABEL_NAMES)]:
        labels = re.findall(r'(\w+)="([^"]*)"', "\n".join(l for l in text.splitlines() if not l.startswith("#")))
        assert {name for name, _ in labels} <= allowed
        values = {value for _, value in labels}
        # the traffic's nicknames and texts never become label values
        assert not {v for v in values if re.search(r"^user\d$|sleepy|flooder|during-outage|forwarded|message \d|spam|not stored|not relayed|before join", v)}
        per_label: dict[str, set[str]] = {}
        for name, value in labels:
            per_label.setdefault(name, set()).add(value)
        assert {n: len(v) for n, v in per_label.items() if n != "le" and len(v) > 16} == {}
    series = len([l for l in server_text.splitlines() if l and not l.startswith("#")])
    documented = re.search(r"at most\s+\*\*(\d+) series\*\*\s+per replica", OPERATIONS.read_text())
    assert documented, "docs/operations.md does not state the series count per replica"
    assert series <= int(documented.group(1)), f"a replica exports {series} series, more than documented"
    print(f"\nseries per replica after the traffic: {series} (documented bound {documented.group(1)})")
    relay_series = len([l for l in relay_text.splitlines() if l and not l.startswith("#")])
    documented = re.search(r"on RabbitMQ alone exports at most\s+\*\*(\d+) series\*\*", OPERATIONS.read_text())
    assert documented, "docs/operations.md does not state the series count of a RabbitMQ replica"
    assert relay_series <= int(documented.group(1)), f"a RabbitMQ replica exports {relay_series} series, more than documented"
    print(f"series of a RabbitMQ replica after the traffic: {relay_series} (documented bound {documented.group(1)})")


# ---------------------------------------------------------------------------------------
# The RabbitMQ and forwarding metrics, against what the traffic did.


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample in a /metrics text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_forwarding_metrics_count_what_the_non_owner_forwarded(stack):
    """exercise_forwarding drove a session of the first replica through the second: a POST,
    GETs and a WebSocket upgrade forwarded, and an id of no live replica refused."""
    owner, forwarder = (samples(stack.metrics(a)) for a in stack.servers)
    for kind in ("poll_get", "poll_post", "upgrade"):
        assert forwarder[f'hubbub_forwarded_requests_total{{kind="{kind}"}}'] >= 1, kind
        # the chat traffic never crosses replicas: the owner forwarded nothing
        assert owner[f'hubbub_forwarded_requests_total{{kind="{kind}"}}'] == 0, kind
    assert forwarder['hubbub_forward_failures_total{reason="owner_unknown"}'] >= 1
    assert forwarder["hubbub_forward_duration_seconds_count"] >= 2  # the POST and a GET at least
    assert owner["hubbub_forward_duration_seconds_count"] == 0
    for reason in ("unreachable", "timeout", "broken"):
        assert forwarder[f'hubbub_forward_failures_total{{reason="{reason}"}}'] == 0, reason
    # and Prometheus has the non-owner's series under its pod
    scraped = stack.query('sum by (pod) (hubbub_forwarded_requests_total{kind="upgrade"}) >= 1')["result"]
    assert [r["metric"]["pod"] for r in scraped] == [conftest.REPLICAS[1]]


def test_amqp_metrics_follow_the_relay_replicas_and_the_broker_outage(stack):
    """The two `relay` replicas on RabbitMQ alone chatted (cross-replica broadcasts), lost
    the broker for a few seconds (a message's broadcast could not be published) and
    reconnected by themselves."""
    for address in stack.relays:
        m = samples(stack.metrics(address))
        assert m["hubbub_amqp_connected"] == 1
        assert m["hubbub_amqp_reconnects_total"] >= 1
        assert m['hubbub_amqp_published_total{kind="broadcast"}'] >= 1
        assert m['hubbub_amqp_published_total{kind="heartbeat"}'] >= 1
        assert m['hubbub_amqp_received_total{kind="broadcast"}'] >= 1
        assert m["hubbub_amqp_lag_seconds_count"] >= 1
        assert m["hubbub_amqp_peers"] == 1
        # exported, and 0: nothing was refused by a live connection
        assert m["hubbub_amqp_publish_failures_total"] == 0
        assert not any(k.startswith("hubbub_redis_") for k in m), "a RabbitMQ-only replica has no Redis metrics"
    first = samples(stack.metrics(stack.relays[0]))
    # the message sent during the outage: its broadcast was dropped, not queued
    assert first["hubbub_amqp_publish_dropped_total"] >= 1
    # Prometheus saw the link go down and come back on both relay replicas
    down = stack.query("min_over_time(hubbub_amqp_connected[10m]) == 0")["result"]
    assert sorted(r["metric"]["pod"] for r in down) == sorted(conftest.RELAYS)
    up = stack.query("hubbub_amqp_connected == 1")["result"]
    assert sorted(r["metric"]["pod"] for r in up) == sorted(conftest.RELAYS)
