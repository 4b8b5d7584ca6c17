"""Fixtures of the observability tests: two real hubbub-server replicas sharing a private
Redis (ChatRoom `lobby`, where a polling session opened on one replica is driven through the
other, which forwards its requests), two more on a private RabbitMQ node alone (ChatRoom
`relay`, with a broker outage), a real hubbub-operator (against an API server address where
nothing listens, as tests/operator_cli.rs does), chat traffic, and a real Prometheus
(Debian's `prometheus`) scraping them all on loopback with the rules file loaded.

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
# Two replicas of a second ChatRoom on RabbitMQ alone (no Redis): the hubbub_amqp_* metrics
# (link state, reconnects after a broker outage, published, received, lag, drops).
RELAYS = ["relay-5b8c4-klmno", "relay-5b8c4-pqrst"]
RELAY_LABELS = dict(SERVER_LABELS, app_kubernetes_io_instance="relay")
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


def rabbitmq_tool(name: str) -> str:
    """Debian's rabbitmq-server package installs the scripts that run as the calling user in
    /usr/lib/rabbitmq/bin (the ones on PATH switch to the `rabbitmq` user when run as root)."""
    private = Path("/usr/lib/rabbitmq/bin") / name
    if private.exists():
        return str(private)
    return tool(name, "rabbitmq-server")


class Stack:
    """Redis, RabbitMQ, the hubbub-server replicas, hubbub-operator and Prometheus, as the
    fixture started them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes: list[Process] = []
        self.redis_port = free_port()
        self.servers = [f"127.0.0.1:{free_port()}" for _ in REPLICAS]
        self.server = self.servers[0]
        self.relays = [f"127.0.0.1:{free_port()}" for _ in RELAYS]
        self.prometheus = f"127.0.0.1:{free_port()}"
        self.operator = ""
        self.redis: Process | None = None
        self.amqp_port = free_port()
        # Erlang distribution and epmd ports of the node, kept across its restart.
        self.rabbitmq_ports = (free_port(), free_port())
        self.rabbitmq: Process | None = None
        self.epmd: Process | None = None

    def rabbitmq_env(self) -> dict[str, str]:
        """A private RabbitMQ node: its own ports, data directory, Erlang cookie (HOME) and
        epmd, never the system service."""
        base = self.workdir / "rabbitmq"
        dist_port, epmd_port = self.rabbitmq_ports
        return dict(
            os.environ,
            HOME=str(base / "home"),
            RABBITMQ_NODENAME=f"hubbub-obs-{self.amqp_port}@localhost",
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(dist_port),
            ERL_EPMD_PORT=str(epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(base / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(base / "plugins-expand"),
        )

    def start_rabbitmq(self) -> None:
        env = self.rabbitmq_env()
        base = Path(env["HOME"]).parent
        if self.epmd is None:
            (base / "home").mkdir(parents=True, exist_ok=True)
            (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\nloopback_users = none\n")
            (base / "enabled_plugins").write_text("[].\n")
            # Started here, in the foreground, so that erl does not start a daemon of its own.
            self.epmd = Process("epmd", [tool("epmd", "erlang-base"), "-port", env["ERL_EPMD_PORT"]], self.workdir, env)
            self.processes.append(self.epmd)
            wait_until("epmd to listen", lambda: port_open(int(env["ERL_EPMD_PORT"])), timeout=30)
        self.rabbitmq = Process("rabbitmq", [rabbitmq_tool("rabbitmq-server")], self.workdir, env)
        self.processes.append(self.rabbitmq)
        # "Starting broker... completed with 0 plugins." once it accepts AMQP connections
        self.rabbitmq.wait_for_line("completed with", timeout=120)

    def stop_rabbitmq(self) -> None:
        assert self.rabbitmq is not None
        self.rabbitmq.stop()
        self.processes.remove(self.rabbitmq)
        self.rabbitmq.log.rename(self.workdir / f"rabbitmq-{time.monotonic_ns()}.log")

    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2f"

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


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_server(stack: Stack, pod: str, address: str, workdir: Path, backend: dict[str, str]) -> None:
    env = dict(
        {k: v for k, v in os.environ.items() if not k.startswith("HUBBUB_")},
        **backend,
        HUBBUB_BIND=address,
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
        stack.start_rabbitmq()
        for pod, address in zip(REPLICAS, stack.servers):
            start_server(stack, pod, address, workdir, {"HUBBUB_REDIS_URL": f"redis://127.0.0.1:{stack.redis_port}/0"})
        for pod, address in zip(RELAYS, stack.relays):
            start_server(stack, pod, address, workdir, {"HUBBUB_AMQP_URL": stack.amqp_url()})

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
                {
                    "job_name": "relay",
                    "static_configs": [{"targets": [address], "labels": dict(RELAY_LABELS, pod=pod)} for pod, address in zip(RELAYS, stack.relays)],
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
            lambda: len(stack.query("up == 1")["result"]) == len(REPLICAS) + len(RELAYS) + 1,
        )
        return stack
    except BaseException:
        for process in reversed(stack.processes):
            process.stop()
        raise


def exercise_forwarding(stack: Stack) -> None:
    """A polling session opened on the first replica and then driven through the second,
    which is not its owner and forwards its requests (docs/forwarding.md): a POST, a GET
    and a WebSocket upgrade; and a session id whose owner tag no replica holds. The chat
    traffic never crosses replicas, so these are the only requests the second replica
    forwards."""
    owner, other = stack.servers
    session = traffic.Session(f"http://{owner}")
    session.url = session.url.replace(f"http://{owner}/", f"http://{other}/", 1)
    # a POST through the non-owner: join, then `who` with ack id 1
    session.post("420" + json.dumps(["join", "forwarded"]), "421" + json.dumps(["who"]))
    got: list[str] = []
    deadline = time.monotonic() + 10
    while not any(p.startswith("431[") for p in got) and time.monotonic() < deadline:
        got += session.poll()  # a GET through the non-owner
    assert any(p.startswith("431[") for p in got), f"the owner's ack did not come back through the forwarding replica: {got}"
    # A WebSocket upgrade of that session landing on the non-owner is piped to the owner,
    # which answers 101.
    host, port = other.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as ws:
        ws.sendall(
            (
                f"GET /socket.io/?EIO=4&transport=websocket&sid={session.sid} HTTP/1.1\r\n"
                f"Host: {other}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = ws.recv(200).split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 101"), status
    # A session id with another replica's tag format but no live owner: refused at once.
    nobody = "N0b0dyXX" + session.sid[8:]
    status, _ = http_get(f"http://{other}/socket.io/?EIO=4&transport=polling&sid={nobody}")
    assert status == 400, status


def relay_outage(stack: Stack) -> None:
    """RabbitMQ stopped under the `relay` replicas: link state 0, readiness 503, a chat
    message whose broadcast cannot be published (dropped); then started again: they
    reconnect by themselves (reconnects counted)."""
    stack.stop_rabbitmq()
    for address in stack.relays:
        wait_until(f"{address} /readyz to answer 503 without RabbitMQ", lambda: http_get(f"http://{address}/readyz")[0] == 503, timeout=30)
    session = traffic.Session(f"http://{stack.relays[0]}")
    session.emit("join", "during-outage")
    session.emit("messages", "not relayed")
    session.poll()
    session.close()
    stack.start_rabbitmq()
    for address in stack.relays:
        wait_until(f"{address} /readyz to answer 200 once RabbitMQ is back", lambda: http_get(f"http://{address}/readyz")[0] == 200, timeout=60)


def drive_traffic(stack: Stack, seconds: float) -> None:
    """Chat traffic on both ChatRooms, with forwarded requests, a RabbitMQ outage under
    `relay` and a Redis outage under `lobby` (link state, reconnects, command errors,
    dropped publishes, store_unavailable rejections)."""
    base = f"http://{stack.server}"
    other = f"http://{stack.servers[1]}"
    relays = [f"http://{a}" for a in stack.relays]
    state = {"forwarded": False, "relay_outage": False, "outage": False, "restored": False}

    def during(fraction: float) -> bool:
        """Runs the next step when its time has come; True while steps remain."""
        if fraction > 0.1 and not state["forwarded"]:
            state["forwarded"] = True
            exercise_forwarding(stack)
        elif fraction > 0.25 and not state["relay_outage"]:
            state["relay_outage"] = True
            relay_outage(stack)
        elif fraction > 0.55 and not state["outage"]:
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
        return not all(state.values())

    # six chatters: two on each Redis replica, one on each RabbitMQ replica
    traffic.run([base, other, *relays], seconds, chatters=6, pause=0.2, during=during)
    assert all(state.values()), f"the traffic ended before every step ran: {state}"
    # wait until Prometheus has scraped the end of the run
    wait_until(
        "Prometheus to scrape the traffic",
        lambda: stack.query("hubbub_redis_reconnects_total")["result"]
        and len(stack.query("hubbub_amqp_reconnects_total >= 1")["result"]) == len(RELAYS)
        and float(stack.query("sum(hubbub_connections_total)")["result"][0]["value"][1]) >= 5,
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
