"""Shared fixtures of the chart and Dockerfile tests: paths, the loaded chart, and
rendering a values set into Kubernetes objects with the Helm v4 SDK (offline).

Run through scripts/test.d/40-helm.sh, which creates the virtualenv.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Iterator

import helm_python
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "hubbub"
CI_DIR = CHART_DIR / "ci"
RELEASE = "hubbub"
NAMESPACE = "chat"


def ci_values_files() -> list[Path]:
    """The chart's ci/*-values.yaml files, each a values set the tests render."""
    return sorted(CI_DIR.glob("*-values.yaml"))


def load_values(path: Path) -> dict[str, Any]:
    """A values file as Helm reads it (`-f path`)."""
    return helm_python.values_from_yaml(path.read_text())


def objects_of(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """The Kubernetes objects of rendered templates (NOTES.txt and empty documents left out)."""
    objects = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__template__", template)
                objects.append(doc)
    return objects


def without_origin(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as sent to the API server (without the test's bookkeeping key)."""
    return {k: v for k, v in obj.items() if k != "__template__"}


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def cargo_members() -> dict[str, dict[str, Any]]:
    """Each workspace member's manifest, by its folder relative to the root (crates/NAME)."""
    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members: dict[str, dict[str, Any]] = {}
    for pattern in root["workspace"]["members"]:
        for folder in sorted(ROOT.glob(pattern)):
            if (folder / "Cargo.toml").exists():
                members[folder.relative_to(ROOT).as_posix()] = tomllib.loads((folder / "Cargo.toml").read_text())
    assert members, "the workspace has no members"
    return members


@pytest.fixture(scope="session")
def cargo_manifest(cargo_members) -> dict[str, Any]:
    """The project as one manifest: the workspace's shared [workspace.package] (name
    `hubbub`) and every member's [[bin]] targets."""
    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    package = dict(root["workspace"]["package"], name="hubbub")
    bins = [b for m in cargo_members.values() for b in m.get("bin", [])]
    return {"package": package, "bin": bins}


@pytest.fixture()
def render(chart: helm_python.Chart):
    """render(values) -> (objects, manifests): the chart rendered as `helm install` would."""

    def _render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE):
        manifests = chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
        return objects_of(manifests), manifests

    return _render


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of a kind (and name)."""
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
