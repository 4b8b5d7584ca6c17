#!/usr/bin/env python3
"""Keeps the generated part of charts/hubbub/values.schema.json in step with its sources.

values.schema.json is written by hand except for its ``definitions``, which this
script fills in:

* ``io.k8s.*``: every Kubernetes type the hand-written part references (and all
  they reference in turn), copied from the official Kubernetes JSON schemas that
  the pinned ``kubernetes-validate`` package ships, in their *strict* variant
  (``additionalProperties: false`` on every object), without descriptions.
* ``hubbub.dev.v1alpha1.ChatRoomSpec``: the ``spec`` schema of the ChatRoom CRD
  in charts/hubbub/crds/, made strict the same way, so that a mistyped room
  field fails at ``helm install`` rather than being pruned by the API server.

    python tests/helm/sync_values_schema.py          # rewrite the file
    python tests/helm/sync_values_schema.py --check  # exit 1 if it is stale

tests/helm/test_chart.py runs the check.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import importlib_resources
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hubbub"
SCHEMA_PATH = CHART / "values.schema.json"
# The Kubernetes version whose API the definitions are taken from (k8s-openapi's feature v1_34).
KUBERNETES_VERSION = "1.34.0"
K8S_PREFIX = "io.k8s."
ROOM_SPEC = "hubbub.dev.v1alpha1.ChatRoomSpec"
REF_PREFIX = "#/definitions/"


def kubernetes_definitions() -> dict[str, Any]:
    """All strict definitions of KUBERNETES_VERSION, keyed by their full name."""
    ref = importlib_resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict/_definitions.json"
    )
    with importlib_resources.as_file(ref) as path:
        return json.loads(Path(path).read_text())["$defs"]


def strip_k8s(node: Any) -> Any:
    """A definition without descriptions, its refs pointing into ``definitions``."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "description":
                continue
            if key == "$ref":
                out[key] = REF_PREFIX + value.rsplit("/", 1)[-1]
                continue
            out[key] = strip_k8s(value)
        return out
    if isinstance(node, list):
        return [strip_k8s(item) for item in node]
    return node


def refs_in(node: Any) -> set[str]:
    """Names of the definitions a schema node references."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
                found.add(value[len(REF_PREFIX):])
            else:
                found |= refs_in(value)
    elif isinstance(node, list):
        for item in node:
            found |= refs_in(item)
    return found


def strict_from_crd(node: Any) -> Any:
    """A CRD structural-schema node turned into a strict JSON schema.

    Objects with fixed properties refuse other keys (unless the CRD preserves
    unknown fields there), int-or-string becomes anyOf, nullable adds "null".
    """
    if isinstance(node, list):
        return [strict_from_crd(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: strict_from_crd(sub) for name, sub in value.items()}
        else:
            out[key] = strict_from_crd(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = types + ["null"]
    is_object = out.get("type") == "object" or "properties" in out
    if is_object and "additionalProperties" not in out:
        out["additionalProperties"] = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    return out


def crd_documents() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions in the chart's crds/."""
    docs = []
    for path in sorted((CHART / "crds").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def chatroom_spec_schema() -> dict[str, Any]:
    """The strict values schema of a ChatRoom spec, from the served CRD version."""
    for crd in crd_documents():
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        if crd["spec"]["group"] != "hubbub.dev" or crd["spec"]["names"]["kind"] != "ChatRoom":
            continue
        for version in crd["spec"]["versions"]:
            if version["name"] == "v1alpha1":
                spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
                return strict_from_crd(spec)
    raise SystemExit("charts/hubbub/crds/ holds no ChatRoom CRD (hubbub.dev/v1alpha1): copy k8s/crd.yaml there")


def synced(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``definitions`` regenerated from the sources."""
    hand_written = {k: v for k, v in schema.items() if k != "definitions"}
    definitions: dict[str, Any] = {ROOM_SPEC: chatroom_spec_schema()}
    available = kubernetes_definitions()
    pending = sorted(n for n in refs_in(hand_written) | refs_in(definitions) if n.startswith(K8S_PREFIX))
    while pending:
        name = pending.pop()
        if name in definitions:
            continue
        if name not in available:
            raise SystemExit(f"values.schema.json references {name}, which Kubernetes {KUBERNETES_VERSION} lacks")
        definitions[name] = strip_k8s(available[name])
        pending += sorted(refs_in(definitions[name]) - definitions.keys())
    result = copy.deepcopy(hand_written)
    result["definitions"] = dict(sorted(definitions.items()))
    return result


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str]) -> int:
    current_text = SCHEMA_PATH.read_text()
    wanted = render(synced(json.loads(current_text)))
    if "--check" in argv:
        if wanted != current_text:
            print(f"{SCHEMA_PATH} is stale: run python tests/helm/sync_values_schema.py", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
