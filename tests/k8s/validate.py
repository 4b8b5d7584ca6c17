#!/usr/bin/env python3
"""Validates hubbub's Kubernetes YAML without a cluster.

* Built-in kinds (Deployment, Service, CustomResourceDefinition, ClusterRole, ...) are
  validated with `kubernetes-validate` against the official OpenAPI-derived JSON schemas
  of one pinned Kubernetes release, in strict mode (unknown fields are errors). The
  schemas ship inside the PyPI package, so this works offline.
* ChatRooms (hubbub.dev/*) are validated against the CRD's own openAPIV3Schema the way
  the API server does it: defaults first, then the schema (bounds, enums, patterns,
  required fields, unknown fields rejected as with kubectl's strict field validation,
  list-map key uniqueness), then the CEL `x-kubernetes-validations` rules (cel-python).
* The CRD schema itself must be structural (every node typed).

Usage:
  validate.py --kubernetes-version 1.34 --crd k8s/crd.yaml \
      --manifests FILE... --valid-rooms FILE... --invalid-rooms FILE... \
      --invalid-manifests FILE...

Files in --invalid-rooms and --invalid-manifests must each hold one ChatRoom and a comment `# expect: TEXT`;
the validation must fail with an error message containing TEXT.
Prints one line per check and `N passed, M failed` at the end; exits 1 on any failure.
"""

import argparse
import copy
import re
import sys

import celpy
import jsonschema
import kubernetes_validate
import yaml

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, what):
        self.passed += 1
        print(f"ok    {what}")

    def fail(self, what, why):
        self.failed += 1
        print(f"FAIL  {what}: {why}")


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def doc_name(doc):
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


# ---- CRD schema -> JSON Schema --------------------------------------------------------

def structural_problems(node, path="openAPIV3Schema"):
    """Paths of schema nodes without a type (not structural)."""
    problems = []
    if not isinstance(node, dict):
        return problems
    if "type" not in node and not node.get("x-kubernetes-int-or-string") \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(path)
    for name, sub in (node.get("properties") or {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += structural_problems(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{path}{{}}")
    return problems


def to_json_schema(node):
    """The CRD's OpenAPI v3 subset as a JSON Schema the `jsonschema` package checks."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out["properties"] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        elif key == "not":
            out[key] = to_json_schema(value)
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format", "default", "description", "title"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def apply_defaults(schema, value):
    """Fills in `default`s like the API server does before validation."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for k in list(value):
                if k not in (schema.get("properties") or {}):
                    value[k] = apply_defaults(extra, value[k])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


CEL = celpy.Environment()


def extension_errors(schema, value, path):
    """CEL rules and list-map key uniqueness, evaluated where the value is present."""
    errors = []
    if not isinstance(schema, dict) or value is None:
        return errors
    for rule in schema.get("x-kubernetes-validations") or []:
        program = CEL.program(CEL.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        if isinstance(result, Exception) or not bool(result):
            errors.append(f"{path}: {rule.get('message', 'failed rule: ' + rule['rule'])}")
    if schema.get("x-kubernetes-list-type") == "map" and isinstance(value, list):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen = set()
        for item in value:
            key = tuple(item.get(k) for k in keys)
            if key in seen:
                desc = ",".join(f"{k}={v}" for k, v in zip(keys, key))
                errors.append(f"{path}: duplicate entries for key {desc}")
            seen.add(key)
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                errors += extension_errors(sub, value[name], f"{path}.{name}" if path else name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += extension_errors(schema["items"], item, f"{path}[{i}]")
    return errors


def json_path(error):
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def chatroom_errors(crd, room):
    """Every reason the API server would refuse `room`, as messages."""
    group = crd["spec"]["group"]
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    api_version = room.get("apiVersion", "")
    if not api_version.startswith(group + "/") or api_version.split("/", 1)[1] not in versions:
        return [f"apiVersion {api_version!r} is not served by the CRD"]
    if room.get("kind") != crd["spec"]["names"]["kind"]:
        return [f"kind {room.get('kind')!r} is not {crd['spec']['names']['kind']}"]
    name = (room.get("metadata") or {}).get("name", "")
    if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
        return [f"metadata.name: {name!r} is not a DNS subdomain"]
    schema = versions[api_version.split("/", 1)[1]]["schema"]["openAPIV3Schema"]
    room = apply_defaults(schema, copy.deepcopy(room))
    body = {k: v for k, v in room.items() if k not in ("apiVersion", "kind", "metadata")}
    checked = copy.deepcopy(schema)
    checked.get("properties", {}).pop("metadata", None)
    validator = jsonschema.Draft7Validator(to_json_schema(checked))
    errors = [f"{json_path(e) or '<root>'}: {e.message}" for e in validator.iter_errors(body)]
    if errors:
        return errors
    return extension_errors(schema, body, "")


# ---- main ------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--crd", required=True)
    parser.add_argument("--manifests", nargs="*", default=[])
    parser.add_argument("--valid-rooms", nargs="*", default=[])
    parser.add_argument("--invalid-rooms", nargs="*", default=[])
    parser.add_argument("--invalid-manifests", nargs="*", default=[])
    args = parser.parse_args()
    results = Results()

    versions = kubernetes_validate.utils.all_versions()
    wanted = kubernetes_validate.utils.major_minor(args.kubernetes_version)
    if not any(kubernetes_validate.utils.major_minor(v) == wanted for v in versions):
        print(f"FAIL  kubernetes-validate {kubernetes_validate.__version__} bundles no schemas for {wanted} "
              f"(it has {', '.join(versions)})")
        return 1
    print(f"using kubernetes-validate {kubernetes_validate.__version__} with the bundled Kubernetes {wanted} schemas")

    crd_docs = load_docs(args.crd)
    crds = [d for d in crd_docs if d.get("kind") == "CustomResourceDefinition"]
    if len(crds) != 1:
        results.fail(args.crd, f"expected one CustomResourceDefinition, found {len(crds)}")
        return 1
    crd = crds[0]
    for version in crd["spec"]["versions"]:
        problems = structural_problems(version["schema"]["openAPIV3Schema"])
        if problems:
            results.fail(f"{args.crd} {version['name']} is structural", ", ".join(problems[:5]))
        else:
            results.ok(f"{args.crd} {version['name']} schema is structural")

    for path in args.manifests:
        docs = load_docs(path)
        if not docs:
            results.fail(path, "no YAML documents")
        for doc in docs:
            what = f"{path} {doc_name(doc)}"
            if str(doc.get("apiVersion", "")).startswith(crd["spec"]["group"] + "/"):
                errors = chatroom_errors(crd, doc)
                if errors:
                    results.fail(what, "; ".join(errors))
                else:
                    results.ok(f"{what} (CRD schema)")
                continue
            try:
                kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
                results.ok(f"{what} (Kubernetes {wanted}, strict)")
            except kubernetes_validate.utils.ValidationError as e:
                results.fail(what, f"{json_path(e) or '<root>'}: {e.message}")
            except kubernetes_validate.utils.SchemaNotFoundError as e:
                results.fail(what, e.message)

    for path in args.valid_rooms:
        for doc in load_docs(path):
            errors = chatroom_errors(crd, doc)
            what = f"{path} {doc_name(doc)} accepted by the CRD"
            if errors:
                results.fail(what, "; ".join(errors))
            else:
                results.ok(what)

    for path in args.invalid_rooms:
        with open(path) as f:
            text = f.read()
        match = re.search(r"^# expect: (.+)$", text, re.MULTILINE)
        if not match:
            results.fail(path, "has no '# expect: ...' comment")
            continue
        expected = match.group(1).strip()
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        errors = [e for d in docs for e in chatroom_errors(crd, d)]
        what = f"{path} rejected with '{expected}'"
        if any(expected in e for e in errors):
            results.ok(what)
        elif errors:
            results.fail(what, "rejected for another reason: " + "; ".join(errors))
        else:
            results.fail(what, "was accepted")

    # the checker itself must catch broken built-in objects
    for path in args.invalid_manifests:
        with open(path) as f:
            text = f.read()
        match = re.search(r"^# expect: (.+)$", text, re.MULTILINE)
        if not match:
            results.fail(path, "has no '# expect: ...' comment")
            continue
        expected = match.group(1).strip()
        errors = []
        for doc in [d for d in yaml.safe_load_all(text) if d is not None]:
            try:
                kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
            except kubernetes_validate.utils.ValidationError as e:
                errors.append(f"{json_path(e) or '<root>'}: {e.message}")
        what = f"{path} rejected with '{expected}'"
        if any(expected in e for e in errors):
            results.ok(what)
        else:
            results.fail(what, "; ".join(errors) or "was accepted")

    print(f"{results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
