#!/usr/bin/env python3
"""Draws docs/dashboard-preview.png: every panel of charts/hubbub/files/hubbub-dashboard.json,
in the dashboard's grid layout, with its own queries evaluated by a real Prometheus that
scraped real hubbub-server replicas (on Redis, and on RabbitMQ alone) and hubbub-operator
during a run of chat traffic
(conftest.start_stack and drive_traffic, the same as the tests use).

Not a Grafana screenshot: Grafana is not installable here. Titles, units, legends and
threshold lines come from the dashboard JSON; the drawing is matplotlib's.

    tests/observability/.venv/bin/python tests/observability/preview.py [SECONDS]
"""

from __future__ import annotations

import math
import re
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from conftest import ROOT, drive_traffic, start_stack  # noqa: E402
from test_observability import PENDING_METRICS, load_dashboard, metric_names, substitute  # noqa: E402

OUT = ROOT / "docs" / "dashboard-preview.png"
SCALE = {"bytes": (1 / 2**20, "MiB"), "Bps": (1 / 1024, "KiB/s"), "s": (1000, "ms")}


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip() or "value"


def main(seconds: float) -> None:
    board = load_dashboard()
    with tempfile.TemporaryDirectory(prefix="hubbub-preview-") as tmp:
        stack = start_stack(Path(tmp))
        try:
            start = time.time()
            drive_traffic(stack, seconds)
            end = start + seconds  # stat panels show the value at the end of the traffic
            data = {}
            for panel in board["panels"]:
                for target in panel.get("targets", []):
                    expr = substitute(target["expr"])
                    data[(panel["id"], target["refId"])] = stack.query(expr, path="query_range", start=start, end=end, step=1)["result"]
        finally:
            for process in reversed(stack.processes):
                process.stop()

    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    unit_h, unit_w = 0.42, 0.95
    fig = plt.figure(figsize=(24 * unit_w, rows * unit_h), facecolor="#111217")
    for panel in board["panels"]:
        pos = panel["gridPos"]
        left, width = pos["x"] / 24, pos["w"] / 24
        bottom, height = 1 - (pos["y"] + pos["h"]) / rows, pos["h"] / rows
        if panel["type"] == "row":
            fig.text(left + 0.003, bottom + height / 2, panel["title"], color="#ccccdc", fontsize=13, fontweight="bold", va="center")
            continue
        ax = fig.add_axes([left + 0.006, bottom + 0.012 * 8 / rows * 4, width - 0.012, height - 0.03 * 8 / rows * 4], facecolor="#181b1f")
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.tick_params(colors="#8e8e8e", labelsize=7)
        defaults = panel["fieldConfig"]["defaults"]
        factor, unit = SCALE.get(defaults["unit"], (1, defaults["unit"]))
        ax.set_title(f"{panel['title']} ({unit})" if unit not in ("short",) else panel["title"], color="#ccccdc", fontsize=9, loc="left")
        series = []
        for target in panel["targets"]:
            for result in data[(panel["id"], target["refId"])]:
                points = [(float(t) - start, float(v) * factor) for t, v in result["values"] if not math.isnan(float(v))]
                if points:
                    series.append((legend(target["legendFormat"], result["metric"]), points))
        if panel["type"] == "stat":
            ax.set_axis_off()
            if series:
                value = series[0][1][-1][1]
                steps = defaults["thresholds"]["steps"]
                colour = [s["color"] for s in steps if s["value"] is None or value >= s["value"] * factor][-1]
                mapped = {m: o["text"] for mapping in defaults.get("mappings", []) for m, o in mapping["options"].items()}
                text = mapped.get(str(int(value)), f"{value:.3g}") if value == int(value) else f"{value:.3g}"
                ax.set_facecolor({"green": "#1a4d2e", "red": "#6b1d1d", "orange": "#6b4a1d"}.get(colour, "#181b1f"))
                ax.set_axis_on()
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(0.5, 0.4, text, color="white", fontsize=22, ha="center", va="center", transform=ax.transAxes)
            else:
                ax.text(0.5, 0.4, "No data", color="#8e8e8e", fontsize=12, ha="center", va="center", transform=ax.transAxes)
            continue
        for label, points in series:
            xs, ys = zip(*points)
            ax.plot(xs, ys, linewidth=1, label=label)
        for step in defaults["thresholds"]["steps"][1:]:
            if defaults["custom"]["thresholdsStyle"]["mode"] != "off":
                ax.axhline(step["value"] * factor, color=step["color"], linestyle="--", linewidth=0.8)
        if not series:
            pending = any(n in PENDING_METRICS for t in panel["targets"] for n in metric_names(substitute(t["expr"])))
            ax.text(0.5, 0.5, "No data (metric not exported yet)" if pending else "No data (no observation in this run)", color="#8e8e8e", fontsize=9, ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=6, loc="upper left", facecolor="#181b1f", labelcolor="#ccccdc", edgecolor="#2c3235", ncol=2)
        ax.set_xlabel("seconds into the run", color="#8e8e8e", fontsize=6)
        ax.grid(color="#2c3235", linewidth=0.5)
    fig.text(0.5, 0.999, "hubbub — dashboard preview: the dashboard's queries against a real Prometheus, drawn with matplotlib (not Grafana)", color="#8e8e8e", fontsize=10, ha="center", va="top")
    fig.savefig(OUT, dpi=60, facecolor=fig.get_facecolor())
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 120)
