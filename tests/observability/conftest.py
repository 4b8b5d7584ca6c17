"""Fixtures of the observability tests: a real hubbub-server with a private Redis, a real
hubbub-operator (against an API server address where nothing listens, as
tests/operator_cli.rs does), chat traffic, and a real Prometheus (Debian's `prometheus`)
scraping both on loopback with the rules file loaded.

Every process is started here, on 127.0.0.1 and free ports, in a temporary directory,
and stopped by its own handle at the end of the session.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

import traffic

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "charts" / "hubbub" / "files"
DASHBOARD = FILES / "hubbub-dashboard.json"
RULES = FILES / "hubbub.rules.yaml"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
# Seconds of chat traffic; HUBBUB_PREVIEW (preview.py) asks for a longer run.
TRAFFIC_SECONDS = float(os.environ.get("HUBBUB_TRAFFIC_SECONDS", "20"))
# The labels a scrape in Kubernetes gives the series (the chart's ServiceMonitors, see
# docs/operations.md); set here as static target labels.
# Two replicas of one ChatRoom share the Redis (so that broadcasts cross replicas and
# pub/sub lag is measured).
REPLICAS = ["lobby-7d9f8-abcde", "lobby-7d9f8-fghij"]
SERVER_LABELS = {
    "namespace": "chat",
    "app_kubernetes_io_instance": "lobby",
    "app_kubernetes_io_name": "hubbub",
    "app_kubernetes_io_component": "server",
}
OPERATOR_LABELS = {"namespace": "hubbub-system", "pod": "hubbub-operator-5c6d7-fghij"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def wait_until(what: str, check, timeout: float = 60.0, every: float = 0.1):
    """Polls ``check()`` until it returns something truthy; fails with ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Process:
    """A child process whose output goes to a log file, with a line waiter."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = workdir / f"{name}.log"
        self.handle = self.log.open("w")
        self.proc = subprocess.Popen(argv, stdout=self.handle, stderr=subprocess.STDOUT, env=env, cwd=workdir)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, needle: str, timeout: float = 60.0) -> str:
        def seen():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.proc.returncode}) before logging {needle!r}:\n{self.text()[-3000:]}")
            return next((line for line in self.text().splitlines() if needle in line), None)

        return wait_until(f"{self.name} to log {needle!r}", seen, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.handle.close()


def binary(name: str) -> Path:
    path = TARGET / name
    assert path.is_file(), f"{path} is missing: build it with `cargo build -p {name}` (scripts/test.d/50-observability.sh does)"
    return path


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    assert found, f"'{name}' is missing: install the Debian package '{package}' (apt-get install {package})"
    return found


class Stack:
    """Redis, hubbub-server, hubbub-operator and Prometheus, as the fixture started them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes: list[Process] = []
        self.redis_port = free_port()
        self.servers = [f"127.0.0.1:{free_port()}" for _ in REPLICAS]
        self.server = self.servers[0]
        self.prometheus = f"127.0.0.1:{free_port()}"
        self.operator = ""
        self.redis: Process | None = None

    def start_redis(self) -> None:
        self.redis = Process(
            "redis",
            [tool("redis-server", "redis-server"), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            self.workdir,
        )
        self.processes.append(self.redis)
        self.redis.wait_for_line("Ready to accept connections", timeout=30)

    def stop_redis(self) -> None:
        assert self.redis is not None
        self.redis.stop()
        self.processes.remove(self.redis)
        self.redis.log.rename(self.workdir / f"redis-{time.monotonic_ns()}.log")

    def metrics(self, address: str) -> str:
        status, body = http_get(f"http://{address}/metrics")
        assert status == 200, f"GET http://{address}/metrics answered {status}"
        return body

    def query(self, expr: str, path: str = "query", **params) -> dict:
        url = f"http://{self.prometheus}/api/v1/{path}?" + urllib.parse.urlencode({"query": expr, **params})
        status, body = http_get(url, timeout=30)
        answer = json.loads(body) if body else {}
        assert status == 200 and answer.get("status") == "success", f"Prometheus refused {expr!r}: {status} {body[:500]}"
        return answer["data"]


def start_server(stack: Stack, pod: str, address: str, workdir: Path) -> None:
    env = dict(
        os.environ,
        HUBBUB_BIND=address,
        HUBBUB_REDIS_URL=f"redis://127.0.0.1:{stack.redis_port}/0",
        HUBBUB_OUTBOUND_QUEUE="16",  # small, so that a client that never reads overflows soon
        HUBBUB_PING_INTERVAL_MS="1000",
        HUBBUB_PING_TIMEOUT_MS="3000",
        HUBBUB_LOG_FORMAT="text",
        NO_COLOR="1",
    )
    server = Process(pod, [str(binary("hubbub-server"))], workdir, env)
    stack.processes.append(server)
    server.wait_for_line("listening")
    wait_until(f"{pod} /readyz to answer 200", lambda: http_get(f"http://{address}/readyz")[0] == 200)


def start_stack(workdir: Path) -> Stack:
    stack = Stack(workdir)
    try:
        stack.start_redis()
        for pod, address in zip(REPLICAS, stack.servers):
            start_server(stack, pod, address, workdir)

        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            f"apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free_port()}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]\n"
            "current-context: x\n"
        )
        operator_env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
        operator_env.update(KUBECONFIG=str(kubeconfig), NO_COLOR="1")
        operator_address = f"127.0.0.1:{free_port()}"
        operator = Process(
            "hubbub-operator",
            [str(binary("hubbub-operator")), "run", "--metrics-bind", operator_address, "--leader-election=false", "--log-format", "text"],
            workdir,
            operator_env,
        )
        stack.processes.append(operator)
        operator.wait_for_line("controller started")
        stack.operator = operator_address

        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "lobby",
                    "static_configs": [{"targets": [address], "labels": dict(SERVER_LABELS, pod=pod)} for pod, address in zip(REPLICAS, stack.servers)],
                },
                {"job_name": "hubbub", "static_configs": [{"targets": [stack.operator], "labels": OPERATOR_LABELS}]},
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = Process(
            "prometheus",
            [
                tool("prometheus", "prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address={stack.prometheus}",
                "--web.enable-lifecycle",
            ],
            workdir,
        )
        stack.processes.append(prometheus)
        wait_until("Prometheus to be ready", lambda: http_get(f"http://{stack.prometheus}/-/ready")[0] == 200)
        wait_until(
            "Prometheus to scrape hubbub-server and hubbub-operator",
            lambda: len(stack.query("up == 1")["result"]) == len(REPLICAS) + 1,
        )
        return stack
    except BaseException:
        for process in reversed(stack.processes):
            process.stop()
        raise


def drive_traffic(stack: Stack, seconds: float) -> None:
    """Chat traffic, with a Redis outage in its second half (link state, reconnects,
    command errors, store_unavailable rejections)."""
    base = f"http://{stack.server}"
    other = f"http://{stack.servers[1]}"
    state = {"outage": False, "restored": False}

    def during(fraction: float) -> None:
        if fraction > 0.55 and not state["outage"]:
            state["outage"] = True
            stack.stop_redis()
            wait_until("/readyz to answer 503 without Redis", lambda: http_get(f"{base}/readyz")[0] == 503, timeout=30)
            session = traffic.Session(base)
            session.emit("join", "during-outage")
            session.emit("messages", "not stored")
            session.poll()
            session.close()
        elif fraction > 0.7 and not state["restored"]:
            state["restored"] = True
            stack.start_redis()
            for url in (base, other):
                wait_until("/readyz to answer 200 once Redis is back", lambda: http_get(f"{url}/readyz")[0] == 200, timeout=60)

    traffic.run([base, other], seconds, pause=0.2, during=during)
    # wait until Prometheus has scraped the end of the run
    wait_until(
        "Prometheus to scrape the traffic",
        lambda: stack.query("hubbub_redis_reconnects_total")["result"] and float(stack.query("sum(hubbub_connections_total)")["result"][0]["value"][1]) >= 5,
        timeout=30,
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("observability")
    stack = start_stack(workdir)
    try:
        stack.traffic_started = time.time()
        drive_traffic(stack, TRAFFIC_SECONDS)
        stack.traffic_ended = time.time()
        yield stack
    finally:
        for process in reversed(stack.processes):
            process.stop()
