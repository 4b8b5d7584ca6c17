"""Tests of the Dockerfile and .dockerignore that need no Docker engine.

The Dockerfile is parsed with dockerfile-parse (which applies ARG defaults); the build
context is reconstructed from the files git tracks minus what .dockerignore excludes
(with Docker's matching rules), and checked against what cargo needs: the manifests,
every target of Cargo.toml, and every file the sources embed with include_str!.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
from dockerfile_parse import DockerfileParser

from conftest import ROOT

SHIPPED_BINARIES = {"hubbub-server", "hubbub-operator"}
RUNTIME_BASES = ("gcr.io/distroless/cc-debian12", "debian:bookworm-slim")


@dataclass
class Stage:
    """One FROM ... [AS name] of the Dockerfile and its instructions."""

    base: str
    name: str | None
    instructions: list[dict] = field(default_factory=list)

    def all(self, instruction: str) -> list[dict]:
        return [i for i in self.instructions if i["instruction"] == instruction]


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    parsed = DockerfileParser(path=str(ROOT / "Dockerfile"))
    assert parsed.structure, "the Dockerfile is empty or did not parse"
    return parsed


@pytest.fixture(scope="module")
def stages(parser) -> list[Stage]:
    result: list[Stage] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=words[0], name=name))
        elif result:
            result[-1].instructions.append(instruction)
    # parent_images has the FROM images with ARG defaults substituted, in order.
    assert len(parser.parent_images) == len(result)
    for stage, image in zip(result, parser.parent_images):
        stage.base = image
    return result


def copy_args(instruction: dict) -> tuple[dict[str, str], list[str], str]:
    """(flags, sources, destination) of a COPY instruction (shell or JSON form)."""
    value = instruction["value"].strip()
    words = json.loads(value) if value.startswith("[") else shlex.split(value)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, flag_value = words.pop(0)[2:].partition("=")
        flags[key] = flag_value
    return flags, words[:-1], words[-1]


def bins_named(command: str) -> list[str]:
    return re.findall(r"--bin[= ]+([A-Za-z0-9_-]+)", command)


def packages_named(command: str) -> list[str]:
    return re.findall(r"(?:-p|--package)[= ]+([A-Za-z0-9_-]+)", command)


# ---------------------------------------------------------------------------------------
# The build context: tracked files minus .dockerignore, with Docker's matching rules.


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """(is_exception, regex) per .dockerignore line, as moby/patternmatcher reads them."""
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        line = line[1:].strip() if exception else line
        line = str(PurePosixPath(line.lstrip("/")))  # filepath.Clean: drops trailing '/'
        regex, i = "", 0
        while i < len(line):
            if line.startswith("**/", i):
                regex += "(.*/)?"
                i += 3
            elif line.startswith("**", i):
                regex += ".*"
                i += 2
            elif line[i] == "*":
                regex += "[^/]*"
                i += 1
            elif line[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(line[i])
                i += 1
        patterns.append((exception, re.compile(f"^{regex}$")))
    return patterns


def excluded(path: str, patterns=None) -> bool:
    """Whether Docker leaves `path` (relative, '/'-separated) out of the build context."""
    patterns = patterns if patterns is not None else dockerignore_patterns()
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # the path and its parents
    result = False
    for exception, regex in patterns:
        if any(regex.match(c) for c in candidates):
            result = not exception
    return result


@pytest.fixture(scope="module")
def context_files() -> set[str]:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    patterns = dockerignore_patterns()
    files = {p for p in tracked.decode().split("\0") if p and (ROOT / p).exists()}
    return {p for p in files if not excluded(p, patterns)}


def in_context(path: str, files: set[str]) -> bool:
    path = path.strip("/")
    return path in ("", ".") or path in files or any(f.startswith(path + "/") for f in files)


# ---------------------------------------------------------------------------------------


def test_dockerfile_parses_into_named_multi_stage_build(stages):
    assert len(stages) >= 3, "expected builder stages and a runtime stage"
    names = [s.name for s in stages]
    assert all(names), f"every stage should be named: {names}"
    assert len(set(names)) == len(names)


def test_builder_uses_a_rust_toolchain_new_enough_for_the_crate(stages, cargo_manifest):
    bases = [s.base for s in stages if s.base.startswith("rust:")]
    assert bases, "no rust: builder image"
    wanted = tuple(int(x) for x in cargo_manifest["package"]["rust-version"].split("."))
    for base in bases:
        match = re.match(r"rust:(\d+)\.(\d+)(?:\.\d+)?-bookworm$", base)
        assert match, f"pin the Rust version and Debian release of {base} (e.g. rust:1.95-bookworm)"
        assert (int(match[1]), int(match[2])) >= wanted[:2]


def test_stage_references_point_to_earlier_stages(stages):
    seen: set[str] = set()
    for stage in stages:
        parent = stage.base.split(":")[0]
        for copy in stage.all("COPY"):
            flags, _, _ = copy_args(copy)
            if "from" in flags:
                assert flags["from"] in seen, f"COPY --from={flags['from']} names no earlier stage"
        if stage.base in seen:
            assert parent  # FROM <earlier stage>
        seen.add(stage.name)


def test_every_file_copied_from_the_context_exists(stages, context_files):
    copied = 0
    for stage in stages:
        for copy in stage.all("COPY") + stage.all("ADD"):
            flags, sources, _ = copy_args(copy)
            if "from" in flags:
                continue
            for source in sources:
                copied += 1
                assert in_context(source, context_files), f"COPY {source}: not in the build context"
    assert copied > 0


def test_binaries_built_and_shipped_are_the_crates_bin_targets(stages, cargo_manifest, cargo_members):
    crate_bins = {b["name"] for b in cargo_manifest["bin"]}
    bins_of_package = {m["package"]["name"]: {b["name"] for b in m.get("bin", [])} for m in cargo_members.values()}
    builds = [r["value"] for s in stages for r in s.all("RUN") if "cargo build" in r["value"]]
    assert builds, "no `cargo build` in the Dockerfile"
    for command in builds:
        assert "--release" in command and "--locked" in command
        built = set(bins_named(command))
        for package in packages_named(command):
            assert package in bins_of_package, f"-p {package}: not a workspace member"
            built |= bins_of_package[package]
        assert built == SHIPPED_BINARIES
    assert SHIPPED_BINARIES <= crate_bins
    runtime = stages[-1]
    shipped = {
        PurePosixPath(source).name
        for copy in runtime.all("COPY")
        for flags, sources, _ in [copy_args(copy)]
        if "from" in flags
        for source in sources
    }
    assert shipped == SHIPPED_BINARIES
    produced = " ".join(builds)
    for binary in SHIPPED_BINARIES:
        assert f"target/release/{binary}" in produced, f"{binary} is shipped but not taken from target/release"


def test_dependencies_are_built_in_a_layer_of_their_own(stages):
    """In the stage running `cargo build`, dependencies are built (cargo chef cook) from the
    recipe alone, before the project's sources are copied in."""
    (builder,) = [s for s in stages if any("cargo build" in r["value"] for r in s.all("RUN"))]
    steps = [i for i in builder.instructions if i["instruction"] in ("COPY", "RUN")]
    cook = next(n for n, i in enumerate(steps) if i["instruction"] == "RUN" and "cargo chef cook" in i["value"])
    build = next(n for n, i in enumerate(steps) if i["instruction"] == "RUN" and "cargo build" in i["value"])
    assert cook < build
    assert "--release" in steps[cook]["value"] and "--locked" in steps[cook]["value"]
    for step in steps[:cook]:
        if step["instruction"] == "COPY":
            _, sources, _ = copy_args(step)
            assert all(PurePosixPath(s).name in ("recipe.json", "Cargo.toml", "Cargo.lock") for s in sources), step["value"]
    assert any(s["instruction"] == "COPY" for s in steps[cook:build]), "sources must be copied after the dependency layer"
    prepares = [r["value"] for s in stages for r in s.all("RUN") if "cargo chef prepare" in r["value"]]
    assert prepares, "no planner stage runs `cargo chef prepare`"


def test_build_context_holds_everything_cargo_needs(context_files, cargo_members):
    """Cargo refuses a manifest whose targets are missing, and include_str! needs its files."""
    assert {"Cargo.toml", "Cargo.lock"} <= context_files
    needed = []
    for member, manifest in cargo_members.items():
        needed.append(f"{member}/Cargo.toml")
        lib = manifest.get("lib", {}).get("path", "src/lib.rs")
        if (ROOT / member / lib).exists() or "lib" in manifest:
            needed.append(f"{member}/{lib}")
        if not manifest.get("bin") and (ROOT / member / "src/main.rs").exists():
            needed.append(f"{member}/src/main.rs")
        for kind, folder in [("bin", "src/bin"), ("example", "examples"), ("bench", "benches"), ("test", "tests")]:
            for target in manifest.get(kind, []):
                path = target.get("path")
                if path is None:
                    single, multi = f"{folder}/{target['name']}.rs", f"{folder}/{target['name']}/main.rs"
                    path = single if (ROOT / member / single).exists() or not (ROOT / member / multi).exists() else multi
                needed.append(f"{member}/{path}")
        build_script = manifest["package"].get("build", "build.rs" if (ROOT / member / "build.rs").exists() else None)
        if build_script:
            needed.append(f"{member}/{build_script}")
    for source in sorted(p for p in context_files if p.endswith(".rs")):
        text = (ROOT / source).read_text()
        # include_str!("../web/app.js"): relative to the source file.
        for embedded in re.findall(r"include_(?:str|bytes)!\(\s*\"([^\"]+)\"", text):
            needed.append(str(PurePosixPath(source).parent / embedded))
        # include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/app.js")): relative to the crate.
        pattern = r"include_(?:str|bytes)!\(\s*concat!\(\s*env!\(\s*\"CARGO_MANIFEST_DIR\"\s*\)\s*,\s*\"/?([^\"]+)\""
        needed += re.findall(pattern, text)
    missing = []
    for path in needed:
        normal = str(PurePosixPath(*[p for p in Path(path).parts]))
        resolved = (ROOT / normal).resolve().relative_to(ROOT.resolve()).as_posix()
        if resolved not in context_files:
            missing.append(resolved)
    assert missing == []


def test_runtime_is_small_with_ca_certificates(stages):
    runtime = stages[-1]
    assert runtime.base.startswith(RUNTIME_BASES), runtime.base
    if runtime.base.startswith("debian:"):
        installs = " ".join(r["value"] for r in runtime.all("RUN"))
        assert "ca-certificates" in installs
    else:
        assert runtime.base.startswith("gcr.io/distroless/cc-debian12"), "distroless cc ships glibc, libgcc and CA certificates"
    # Only the binaries come from the builder.
    for copy in runtime.all("COPY"):
        flags, sources, destination = copy_args(copy)
        assert "from" in flags
        assert destination == "/usr/local/bin/"


def test_runs_as_numeric_non_root_user_65532(stages):
    users = stages[-1].all("USER")
    assert users, "the runtime stage sets no USER"
    user, _, group = users[-1]["value"].strip().partition(":")
    assert user == "65532"
    assert group in ("", "65532")


def test_exposes_8080_and_runs_the_server_by_default(stages):
    runtime = stages[-1]
    assert [e["value"].strip() for e in runtime.all("EXPOSE")] == ["8080"]
    (cmd,) = runtime.all("CMD")
    assert json.loads(cmd["value"]) == ["/usr/local/bin/hubbub-server"]
    assert not runtime.all("ENTRYPOINT")


def test_oci_labels_follow_cargo_toml(parser, cargo_manifest):
    labels = parser.labels  # ARG defaults substituted
    package = cargo_manifest["package"]
    assert labels["org.opencontainers.image.source"] == package["repository"]
    assert labels["org.opencontainers.image.licenses"] == package["license"]
    assert labels["org.opencontainers.image.version"] == package["version"]
    assert labels["org.opencontainers.image.title"] == package["name"]


@pytest.mark.parametrize(
    "path",
    ["target/release/hubbub-server", "target", "node_modules/x/index.js", "tests/node/node_modules/socket.io-client/package.json",
     "tests/helm/.venv/bin/python", ".git/HEAD", "charts/hubbub/values.yaml", "k8s/crd.yaml"],
)
def test_dockerignore_keeps_build_output_and_dependencies_out(path):
    assert excluded(path)


@pytest.mark.parametrize("path", ["Cargo.toml", "Cargo.lock", "crates/server/src/lib.rs", "crates/server/src/main.rs", "crates/server/web/index.html", "crates/socketio/benches/protocol.rs", "crates/socketio/examples/conformance.rs", "crates/operator/Cargo.toml"])
def test_dockerignore_keeps_the_sources_in(path):
    assert not excluded(path)


def test_dockerignore_matcher_follows_docker_rules():
    """The matcher above: '**/' spans folders, a folder pattern covers its contents, '!' re-includes."""
    rules = [(False, re.compile(r"^(.*/)?node_modules$")), (False, re.compile(r"^docs$")), (True, re.compile(r"^docs/keep\.md$"))]
    assert excluded("a/b/node_modules/c", rules)
    assert excluded("docs/x.md", rules)
    assert not excluded("docs/keep.md", rules)
    assert not excluded("src/node_modules.rs", rules)
