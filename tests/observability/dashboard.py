#!/usr/bin/env python3
"""Writes charts/hubbub/files/hubbub-dashboard.json, hubbub's Grafana dashboard, from the
panel list below (one line per panel instead of hundreds of lines of JSON).

    python3 tests/observability/dashboard.py          # rewrite the file
    python3 tests/observability/dashboard.py --check  # exit 1 if the file is stale

Every query selects the server pods by ``namespace`` and ``app_kubernetes_io_instance``
(the ChatRoom: the operator's ``app.kubernetes.io/instance`` pod label, copied onto the
series by the chart's ServiceMonitor or by a kubernetes-pods scrape job); ``pod`` is the
replica. The operator's metrics carry no room label (its own label discipline), so its
panels show the operator as a whole. tests/observability/test_observability.py checks the
result (Grafana's dashboard model, PromQL, metric names against real /metrics output).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "charts" / "hubbub" / "files" / "hubbub-dashboard.json"

DS = {"type": "prometheus", "uid": "${datasource}"}
# The ChatRoom selector of every server query.
S = 'namespace=~"$namespace", app_kubernetes_io_instance=~"$chatroom"'
RI = "$__rate_interval"


def thresholds(*steps):
    """Grafana threshold steps: the base colour, then (value, colour) pairs."""
    base, *rest = steps
    return {"mode": "absolute", "steps": [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in rest]}


OK = thresholds("green")


class Layout:
    """Places panels left to right in rows of 24 grid units; hands out unique ids."""

    def __init__(self):
        self.panels, self.x, self.y, self.h, self.next_id = [], 0, 0, 0, 1

    def _place(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.h = 0, self.y + self.h, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.next_id += 1
        self.x += w
        self.h = max(self.h, h)
        self.panels.append(panel)

    def row(self, title):
        if self.x:
            self.x, self.y, self.h = 0, self.y + self.h, 0
        self._place({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.h = 0, self.y + 1, 0

    def panel(self, kind, title, description, targets, unit, w=8, h=8, steps=OK, mappings=None, stack=False, minimum=0):
        defaults = {"unit": unit, "thresholds": steps, "color": {"mode": "palette-classic" if kind == "timeseries" else "thresholds"}}
        if minimum is not None:
            defaults["min"] = minimum
        if mappings:
            defaults["mappings"] = mappings
        if kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                "thresholdsStyle": {"mode": "off" if steps is OK else "line+area"},
            }
            options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi", "sort": "desc"}}
        else:
            options = {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "background",
                "graphMode": "none",
                "justifyMode": "auto",
                "orientation": "auto",
                "textMode": "auto",
            }
        self._place(
            {
                "type": kind,
                "title": title,
                "description": description,
                "datasource": DS,
                "targets": [
                    {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend, "range": True}
                    for i, (expr, legend) in enumerate(targets)
                ],
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": options,
            },
            w,
            h,
        )


UP_DOWN = [{"type": "value", "options": {"0": {"text": "down", "color": "red", "index": 0}, "1": {"text": "up", "color": "green", "index": 1}}}]


def build() -> dict:
    L = Layout()
    ts, stat = "timeseries", "stat"

    L.row("Overview")
    L.panel(stat, "Clients connected", "Engine.IO connections open on the selected ChatRooms, all transports.", [(f"sum(hubbub_connections_open{{{S}}})", "")], "short", w=4, h=4)
    L.panel(stat, "Replicas scraped", "Server replicas Prometheus scrapes successfully now.", [(f'sum(up{{{S}, app_kubernetes_io_component="server"}})', "")], "short", w=4, h=4, steps=thresholds("red", (1, "green")))
    L.panel(stat, "Back-end link", "Lowest back-end link state of any replica: up when every replica reaches its Redis (every connection) and its RabbitMQ.", [(f"min(hubbub_redis_connected{{{S}}} or hubbub_amqp_connected{{{S}}})", "")], "short", w=4, h=4, steps=thresholds("red", (1, "green")), mappings=UP_DOWN)
    L.panel(stat, "Deliveries /s", "Packets written to clients per second.", [(f"sum(rate(hubbub_packets_sent_total{{{S}}}[{RI}]))", "")], "pps", w=4, h=4)
    L.panel(stat, "Rejected events /s", "Client events refused (any reason) per second.", [(f"sum(rate(hubbub_events_rejected_total{{{S}}}[{RI}]))", "")], "short", w=4, h=4, steps=thresholds("green", (1, "orange"), (10, "red")))
    L.panel(stat, "ChatRooms not Ready", "ChatRooms whose Ready condition is not True, counted by the operator (all namespaces).", [('sum(hubbub_operator_chatrooms{condition="not_ready"})', "")], "short", w=4, h=4, steps=thresholds("green", (1, "red")))

    L.row("Clients")
    L.panel(ts, "Connections by transport and replica", "Open Engine.IO connections per replica (pod) and transport.", [(f"sum by (pod, transport) (hubbub_connections_open{{{S}}})", "{{pod}} {{transport}}")], "short", stack=True, w=6)
    L.panel(ts, "Connects and disconnects by reason", "New connections per second (connects) and closed ones by reason. slow_consumer: a client that did not drain its outbound queue; ping_timeout: a client gone silent.", [(f"sum(rate(hubbub_connections_total{{{S}}}[{RI}]))", "connects"), (f"sum by (reason) (rate(hubbub_disconnects_total{{{S}}}[{RI}]))", "{{reason}}")], "ops", w=6)
    L.panel(ts, "Socket.IO sockets by replica", "Sockets connected to namespace / (clients past the Socket.IO CONNECT) per replica.", [(f"sum by (pod) (hubbub_sockets_connected{{{S}}})", "{{pod}}")], "short", w=6)
    L.panel(ts, "Handshakes refused (--max-connections)", "Handshakes answered 503 because a replica reached --max-connections.", [(f"sum by (pod) (rate(hubbub_sessions_refused_total{{{S}}}[{RI}]))", "{{pod}}")], "ops", w=6, steps=thresholds("green", (0.1, "red")))

    L.row("Traffic")
    L.panel(ts, "Deliveries per second", "Engine.IO packets sent to and received from clients per second.", [(f"sum(rate(hubbub_packets_sent_total{{{S}}}[{RI}]))", "sent"), (f"sum(rate(hubbub_packets_received_total{{{S}}}[{RI}]))", "received")], "pps")
    L.panel(ts, "Bytes per second", "Payload bytes sent to and received from clients.", [(f"sum(rate(hubbub_bytes_sent_total{{{S}}}[{RI}]))", "sent"), (f"sum(rate(hubbub_bytes_received_total{{{S}}}[{RI}]))", "received")], "Bps")
    L.panel(ts, "Events received by event", "Socket.IO events from clients per second (other: unknown events, ignored).", [(f"sum by (event) (rate(hubbub_events_received_total{{{S}}}[{RI}]))", "{{event}}")], "ops")
    L.panel(ts, "Rejected events by reason", "Refused client events per second, answered with an error ack.", [(f"sum by (reason) (rate(hubbub_events_rejected_total{{{S}}}[{RI}]))", "{{reason}}")], "ops")
    L.panel(ts, "Rate-limit refusals by replica", "Events refused with 'rate limit exceeded' per replica (--rate-limit, --rate-burst).", [(f'sum by (pod) (rate(hubbub_events_rejected_total{{{S}, reason="rate_limited"}}[{RI}]))', "{{pod}}")], "ops")
    L.panel(ts, "Slow consumers (outbound queue overflows)", "Clients disconnected because their outbound queue (--outbound-queue) overflowed.", [(f"sum by (pod) (rate(hubbub_outbound_queue_overflows_total{{{S}}}[{RI}]))", "{{pod}}")], "ops", steps=thresholds("green", (0.05, "red")))

    L.row("Broadcasts")
    L.panel(ts, "Broadcast fan-out", "Recipients per broadcast on one replica: median, 99th percentile and mean.", [
        (f"histogram_quantile(0.5, sum by (le) (rate(hubbub_broadcast_recipients_bucket{{{S}}}[{RI}])))", "p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(hubbub_broadcast_recipients_bucket{{{S}}}[{RI}])))", "p99"),
        (f"sum(rate(hubbub_broadcast_recipients_sum{{{S}}}[{RI}])) / sum(rate(hubbub_broadcast_recipients_count{{{S}}}[{RI}]))", "mean"),
    ], "short")
    L.panel(ts, "Broadcast duration", "Time to encode a broadcast once and queue it for every local recipient.", [
        (f"histogram_quantile(0.5, sum by (le) (rate(hubbub_broadcast_duration_seconds_bucket{{{S}}}[{RI}])))", "p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(hubbub_broadcast_duration_seconds_bucket{{{S}}}[{RI}])))", "p99"),
    ], "s", steps=thresholds("green", (0.1, "red")))
    L.panel(ts, "Broadcasts per second", "Broadcasts sent by the replicas of the selected ChatRooms.", [(f"sum by (pod) (rate(hubbub_broadcast_duration_seconds_count{{{S}}}[{RI}]))", "{{pod}}")], "ops")

    L.row("Back end (Redis, RabbitMQ)")
    L.panel(ts, "Redis link state", "1 while a replica's Redis connection (commands, subscriber) is up; 0 while it retries.", [(f"min by (pod, connection) (hubbub_redis_connected{{{S}}})", "{{pod}} {{connection}}")], "short", steps=thresholds("red", (1, "green")), mappings=UP_DOWN)
    L.panel(ts, "RabbitMQ link state", "1 while a replica's RabbitMQ connection is up (RabbitMQ back end only).", [(f"min by (pod) (hubbub_amqp_connected{{{S}}})", "{{pod}}")], "short", steps=thresholds("red", (1, "green")), mappings=UP_DOWN)
    L.panel(ts, "Reconnects", "Back-end reconnections after a lost connection, per hour; Redis master changes (Sentinel failovers followed).", [(f"sum by (pod, connection) (increase(hubbub_redis_reconnects_total{{{S}}}[1h]))", "redis {{pod}} {{connection}}"), (f"sum by (pod) (increase(hubbub_amqp_reconnects_total{{{S}}}[1h]))", "amqp {{pod}}"), (f"sum by (pod) (increase(hubbub_redis_master_changes_total{{{S}}}[1h]))", "redis master changed {{pod}}")], "short")
    L.panel(ts, "Pub/sub lag", "Publish-to-receipt time of broadcasts between replicas, through Redis or RabbitMQ; the alert fires above 500 ms at p99.", [
        (f"histogram_quantile(0.5, sum by (le) (rate(hubbub_redis_pubsub_lag_seconds_bucket{{{S}}}[{RI}])))", "redis p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(hubbub_redis_pubsub_lag_seconds_bucket{{{S}}}[{RI}])))", "redis p99"),
        (f"histogram_quantile(0.5, sum by (le) (rate(hubbub_amqp_lag_seconds_bucket{{{S}}}[{RI}])))", "amqp p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(hubbub_amqp_lag_seconds_bucket{{{S}}}[{RI}])))", "amqp p99"),
    ], "s", steps=thresholds("green", (0.5, "red")))
    L.panel(ts, "Redis commands and errors", "Redis commands per second by operation, and failed ones.", [(f"sum by (op) (rate(hubbub_redis_commands_total{{{S}}}[{RI}]))", "{{op}}"), (f"sum by (op) (rate(hubbub_redis_command_errors_total{{{S}}}[{RI}]))", "errors {{op}}")], "ops")
    L.panel(ts, "Pub/sub messages", "Messages published to and received from the back end, by kind; dropped and lost ones.", [
        (f"sum by (kind) (rate(hubbub_redis_published_total{{{S}}}[{RI}]))", "redis published {{kind}}"),
        (f"sum by (kind) (rate(hubbub_redis_received_total{{{S}}}[{RI}]))", "redis received {{kind}}"),
        (f"sum(rate(hubbub_redis_publish_dropped_total{{{S}}}[{RI}]))", "redis publish dropped"),
        (f"sum(rate(hubbub_redis_receive_lost_total{{{S}}}[{RI}]))", "redis receive lost"),
        (f"sum by (kind) (rate(hubbub_amqp_published_total{{{S}}}[{RI}]))", "amqp published {{kind}}"),
        (f"sum by (kind) (rate(hubbub_amqp_received_total{{{S}}}[{RI}]))", "amqp received {{kind}}"),
        (f"sum(rate(hubbub_amqp_publish_failures_total{{{S}}}[{RI}]))", "amqp publish failures"),
        (f"sum(rate(hubbub_amqp_publish_dropped_total{{{S}}}[{RI}]))", "amqp publish dropped"),
        (f"sum(rate(hubbub_amqp_receive_lost_total{{{S}}}[{RI}]))", "amqp receive lost"),
    ], "ops")

    L.row("Connection-state recovery and forwarding")
    L.panel(ts, "Recovery attempts and results", "Reconnecting clients asking to recover their session, and how it ended (recovered, expired, unknown, ...).", [(f"sum(rate(hubbub_recovery_attempts_total{{{S}}}[{RI}]))", "attempts"), (f"sum by (result) (rate(hubbub_recovery_total{{{S}}}[{RI}]))", "{{result}}")], "ops")
    L.panel(ts, "Replayed events", "Events replayed to recovered clients per second.", [(f"sum(rate(hubbub_recovery_replayed_events_total{{{S}}}[{RI}]))", "replayed")], "ops")
    L.panel(ts, "Forwarded requests", "Requests forwarded to the replica that owns a session, by kind, and failed forwards.", [(f"sum by (kind) (rate(hubbub_forwarded_requests_total{{{S}}}[{RI}]))", "{{kind}}"), (f"sum(rate(hubbub_forward_failures_total{{{S}}}[{RI}]))", "failures")], "ops")
    L.panel(ts, "Forwarding duration", "Time of a forwarded request, 99th percentile.", [(f"histogram_quantile(0.99, sum by (le) (rate(hubbub_forward_duration_seconds_bucket{{{S}}}[{RI}])))", "p99")], "s", steps=thresholds("green", (0.25, "red")))

    L.row("Process")
    L.panel(ts, "CPU per replica", "CPU time used per second (1 = one core).", [(f"sum by (pod) (rate(process_cpu_seconds_total{{{S}}}[{RI}]))", "{{pod}}")], "short")
    L.panel(ts, "Memory per replica", "Resident memory of each replica.", [(f"sum by (pod) (process_resident_memory_bytes{{{S}}})", "{{pod}}")], "bytes")
    L.panel(ts, "File descriptors used", "Open file descriptors (about one per connection) as a share of the process limit.", [(f"max by (pod) (process_open_fds{{{S}}} / process_max_fds{{{S}}})", "{{pod}}")], "percentunit", steps=thresholds("green", (0.8, "red")))

    L.row("Operator")
    L.panel(ts, "Reconciliations by result", "ChatRoom reconciliations per second, by result.", [(f"sum by (result) (rate(hubbub_operator_reconciliations_total[{RI}]))", "{{result}}")], "ops")
    L.panel(ts, "Reconcile failures by reason", "Failed reconciliations per second by reason (kube_api: the API server refused or failed a call).", [(f"sum by (reason) (rate(hubbub_operator_reconcile_failures_total[{RI}]))", "{{reason}}")], "ops", steps=thresholds("green", (0.01, "red")))
    L.panel(ts, "Reconcile duration", "Time of one reconciliation: median and 99th percentile.", [
        (f"histogram_quantile(0.5, sum by (le) (rate(hubbub_operator_reconcile_duration_seconds_bucket[{RI}])))", "p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(hubbub_operator_reconcile_duration_seconds_bucket[{RI}])))", "p99"),
    ], "s", steps=thresholds("green", (5, "red")))
    L.panel(ts, "ChatRooms by Ready condition", "ChatRooms the leading operator knows, by their Ready condition.", [("sum by (condition) (hubbub_operator_chatrooms)", "{{condition}}")], "short")
    L.panel(ts, "Operator leader", "1 for the replica that holds the Lease and reconciles; exactly one should.", [("sum(hubbub_operator_leader)", "leaders")], "short", steps=thresholds("red", (1, "green"), (2, "red")))

    def variable(name, label, query, include_all):
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DS,
            "query": {"query": query, "refId": f"{name}-query"},
            "refresh": 2,
            "includeAll": include_all,
            "multi": include_all,
            "allValue": ".*" if include_all else None,
            "current": {},
            "sort": 1,
            "hide": 0,
            "options": [],
            "regex": "",
        }

    variables = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0, "options": [], "refresh": 1, "regex": "", "includeAll": False, "multi": False},
        variable("namespace", "Namespace", "label_values(hubbub_connections_open, namespace)", True),
        variable("chatroom", "ChatRoom", 'label_values(hubbub_connections_open{namespace=~"$namespace"}, app_kubernetes_io_instance)', True),
    ]
    for v in variables[1:]:
        if v["allValue"] is None:
            del v["allValue"]
    return {
        "uid": "hubbub-overview",
        "title": "hubbub",
        "description": "hubbub chat servers and operator: clients, traffic, broadcasts, back end, recovery, process and reconciliation.",
        "tags": ["hubbub", "socket.io", "chat"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [],
        "annotations": {"list": [{"datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": variables},
        "panels": L.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python3 tests/observability/dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
