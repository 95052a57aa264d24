"""Concurrent znode writers for the ensemble fault tests: kazoo clients, each
a session of its own with one ephemeral node, creating /writers/C-N nodes as
fast as answers come, given the multi-host connect string. Every create is
recorded as acknowledged, or as unknown when it raised a connection error
(it may or may not have happened). Bounded in count and time.
"""

from __future__ import annotations

import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError
from kazoo.handlers.threading import KazooTimeoutError
from register import stop_threads

SESSION_TIMEOUT = 10.0
MAX_WRITES = 20_000
ROOT = "/writers"


class ZnodeWriters:
    def __init__(self, connect: str, clients: int = 2):
        self.connect = connect
        self.clients = clients
        self.acked: list[tuple[float, str]] = []
        self.unknown: list[str] = []
        self.sessions: dict[int, int] = {}
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = threading.Barrier(clients + 1)
        self._threads = [
            threading.Thread(target=self._run, args=(c,), name=f"writer-{c}", daemon=True) for c in range(clients)
        ]

    def start(self) -> ZnodeWriters:
        setup = KazooClient(hosts=self.connect, timeout=10)
        setup.start(timeout=30)
        try:
            setup.ensure_path(ROOT)
        finally:
            setup.stop()
            setup.close()
        for t in self._threads:
            t.start()
        self._started.wait(60)
        return self

    def acked_after(self, moment: float) -> int:
        with self._lock:
            return sum(1 for t, _ in self.acked if t >= moment)

    def wait_acks(self, after: float, count: int, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while self.acked_after(after) < count:
            assert not self.errors, f"writers failed: {self.errors!r}"
            assert time.monotonic() < deadline, f"fewer than {count} creates acknowledged {what} within {timeout}s"
            time.sleep(0.1)

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time without an acknowledgement between start and end."""
        with self._lock:
            times = sorted(t for t, _ in self.acked if start <= t <= end)
        points = [start, *times, end]
        return max(b - a for a, b in zip(points, points[1:]))

    def stop(self, timeout: float = 60.0) -> None:
        stop_threads(self._stop, self._threads, self.errors, timeout, "writers")

    def _run(self, client: int) -> None:
        zk = KazooClient(
            hosts=self.connect,
            timeout=SESSION_TIMEOUT,
            connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0},
        )
        try:
            zk.start(timeout=30)
            zk.create(f"{ROOT}/eph-{client}", b"", ephemeral=True)
            self.sessions[client] = zk.client_id[0]
            self._started.wait(60)
            for n in range(MAX_WRITES):
                if self._stop.is_set():
                    break
                path = f"{ROOT}/{client}-{n}"
                try:
                    zk.create(path, f"{client}-{n}".encode())
                    with self._lock:
                        self.acked.append((time.monotonic(), path))
                except NodeExistsError:
                    # A retried create whose first attempt had happened.
                    with self._lock:
                        self.unknown.append(path)
                except (KazooException, KazooTimeoutError):
                    with self._lock:
                        self.unknown.append(path)
                    for _ in range(600):
                        if self._stop.is_set() or zk.connected:
                            break
                        time.sleep(0.05)
            # The session must have lived through everything.
            for _ in range(600):
                if zk.connected:
                    break
                time.sleep(0.05)
            if zk.client_id is None or zk.client_id[0] != self.sessions[client]:
                raise AssertionError(f"writer {client} lost its session")
            if zk.exists(f"{ROOT}/eph-{client}") is None:
                raise AssertionError(f"writer {client}'s ephemeral is gone")
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.errors.append(e)
        finally:
            zk.stop()
            zk.close()


def children_on(address: str, path: str = ROOT) -> set[str]:
    """The children of `path` as one member sees them after a sync."""
    zk = KazooClient(hosts=address, timeout=10)
    zk.start(timeout=30)
    try:
        zk.sync(path)
        return set(zk.get_children(path))
    finally:
        zk.stop()
        zk.close()
