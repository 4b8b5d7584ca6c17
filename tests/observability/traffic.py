"""Chat traffic against a running hubbub-server, for the observability tests and the
dashboard preview: a minimal Engine.IO v4 / Socket.IO v5 client over HTTP long-polling
(standard library only), driven so that every family of server metrics gets samples.

What it does (all on 127.0.0.1):
* ``Chatter``: joins with a nickname, sends chat messages and reads its deliveries.
* ``flood``: sends more events at once than ``--rate-burst`` allows (``rate_limited``
  rejections, then the server disconnects it).
* ``not_joined``: sends a message without joining (``not_joined`` rejection), then closes
  (``client_close``).
* ``slow_consumer``: joins and never reads, so that its outbound queue overflows while the
  chatters talk (``slow_consumer`` disconnect, ``hubbub_outbound_queue_overflows_total``).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

SEP = "\x1e"


class Session:
    """One Engine.IO polling session joined to namespace ``/``."""

    def __init__(self, base: str, timeout: float = 10.0):
        self.url = f"{base}/socket.io/?EIO=4&transport=polling"
        self.timeout = timeout
        opened = self._get(self.url)
        assert opened.startswith("0{"), opened
        self.sid = json.loads(opened[1:])["sid"]
        self.url += f"&sid={self.sid}"
        self.post("40")
        self.closed = False
        packets = self.poll()
        assert any(p.startswith("40") for p in packets), packets

    def _get(self, url: str) -> str:
        with urllib.request.urlopen(url, timeout=self.timeout) as response:
            return response.read().decode()

    def post(self, *packets: str) -> None:
        """Sends packets; a refusal (the server closed the session) marks it closed."""
        request = urllib.request.Request(self.url, data=SEP.join(packets).encode(), method="POST")
        request.add_header("Content-Type", "text/plain;charset=UTF-8")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError:
            self.closed = True

    def poll(self) -> list[str]:
        """One long-poll GET; answers pings. [] once the server closed the session."""
        try:
            packets = self._get(self.url).split(SEP)
        except urllib.error.HTTPError:
            self.closed = True
            return []
        if "2" in packets:
            self.post("3")
        if "1" in packets:
            self.closed = True
        return packets

    def emit(self, event: str, *args) -> None:
        self.post("42" + json.dumps([event, *args]))

    def close(self) -> None:
        if not self.closed:
            self.post("1")
        self.closed = True


def chatter(base: str, name: str, stop: threading.Event, pause: float) -> None:
    """Chats until ``stop``; reconnects (as socket.io clients do) when the server closes it."""
    n = 0
    while not stop.is_set():
        session = Session(base)
        session.emit("join", name)
        while not stop.is_set() and not session.closed:
            n += 1
            session.emit("messages", f"message {n} from {name}")
            session.emit("who")
            session.poll()
            stop.wait(pause)
        session.close()


def flood(base: str, burst: int) -> None:
    session = Session(base)
    session.emit("join", "flooder")
    session.post(*("42" + json.dumps(["messages", "spam"]) for _ in range(burst * 3)))
    deadline = time.monotonic() + 10
    while not session.closed and time.monotonic() < deadline:
        session.poll()
    session.close()


def not_joined(base: str) -> None:
    session = Session(base)
    session.emit("messages", "hello before join")
    session.emit("join", "")  # bad nickname
    session.poll()
    session.close()


def slow_consumer(base: str, stop: threading.Event) -> Session:
    """Joins and never reads: the chatters' broadcasts fill its outbound queue."""
    session = Session(base)
    session.emit("join", "sleepy")
    return session


def run(bases: list[str], seconds: float, chatters: int = 4, pause: float = 0.05, burst: int = 40, during=None) -> None:
    """Runs the traffic for ``seconds``, the chatters spread over the replicas ``bases``
    (the others go to the first); ``during(elapsed_fraction)`` is called about once a
    second from the calling thread (e.g. to stop and restart Redis mid-run); while it
    returns True (steps remain, e.g. because a restart took long) the traffic goes on past
    ``seconds``, for at most as long again."""
    base = bases[0]
    stop = threading.Event()
    threads = [
        threading.Thread(target=chatter, args=(bases[i % len(bases)], f"user{i}", stop, pause), daemon=True) for i in range(chatters)
    ]
    for t in threads:
        t.start()
    slow_consumer(base, stop)
    not_joined(base)
    flood(base, burst)
    started = time.monotonic()
    pending = True
    while (elapsed := time.monotonic() - started) < seconds or (pending and during and elapsed < 2 * seconds):
        if during:
            pending = bool(during(elapsed / seconds))
        stop.wait(1.0)
        if int(elapsed) % 7 == 3:
            not_joined(base)
            slow_consumer(base, stop)
    stop.set()
    for t in threads:
        t.join(timeout=15)
