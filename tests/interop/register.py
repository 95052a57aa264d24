"""A register workload for the linearizability checker (linearizable.py):
kazoo clients, each a session of its own on a thread of its own, read
(sync + getData), write (setData) and compare-and-set (setData at the
version the client last saw) one znode as fast as answers come, and record
every operation with its invocation and answer times.

An operation that raises a connection error (ConnectionLoss, a lost or
expired session, a timeout) has an unknown outcome; the client waits for
its session to come back (kazoo reconnects to another member by itself) and
carries on. Every loop is bounded in count and time.
"""

from __future__ import annotations

import random
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException
from kazoo.handlers.threading import KazooTimeoutError
from linearizable import UNKNOWN, Op

# Client session timeout (s): short, so a session on a dead member moves on
# quickly, and long enough for a member to be frozen past an election.
SESSION_TIMEOUT = 10.0
# The most operations one client makes.
MAX_OPS = 5000


def stop_threads(stop: threading.Event, threads, errors: list, timeout: float, what: str) -> None:
    """Sets `stop`, joins the threads within `timeout` in all, and fails if one still
    runs or one recorded an error."""
    stop.set()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"{what} still running {timeout}s after stop: {alive}"
    assert not errors, f"{what} failed: {errors!r}"


class RegisterWorkload:
    def __init__(self, connect: str, path: str, clients: int = 3, seed: int = 1):
        self.connect = connect
        self.path = path
        self.clients = clients
        self.seed = seed
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(c,), name=f"register-{c}", daemon=True)
            for c in range(clients)
        ]
        self.errors: list[BaseException] = []

    def start(self) -> RegisterWorkload:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 60.0) -> list[Op]:
        stop_threads(self._stop, self._threads, self.errors, timeout, "register clients")
        with self._lock:
            return list(self.ops)

    def answered(self, kind: str | None = None, after: float = 0.0) -> int:
        with self._lock:
            return sum(1 for o in self.ops if o.answered and o.invoked >= after and kind in (None, o.kind))

    def _record(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def _run(self, client: int) -> None:
        rng = random.Random(self.seed * 1000 + client)
        zk = KazooClient(
            hosts=self.connect,
            timeout=SESSION_TIMEOUT,
            connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0},
        )
        try:
            zk.start(timeout=30)
            last_version = 0
            for n in range(MAX_OPS):
                if self._stop.is_set():
                    return
                kind = rng.choice(["read", "read", "write", "cas"])
                value = f"{client}-{n}".encode()
                invoked = time.monotonic()
                try:
                    if kind == "read":
                        zk.sync(self.path)
                        data, stat = zk.get(self.path)
                        result = (data, stat.version)
                        last_version = stat.version
                    elif kind == "write":
                        result = zk.set(self.path, value).version
                    else:
                        try:
                            result = zk.set(self.path, value, version=last_version).version
                        except BadVersionError:
                            result = None
                except (KazooException, KazooTimeoutError):
                    result = UNKNOWN
                returned = time.monotonic()
                self._record(
                    Op(
                        client, kind, invoked, returned,
                        value=None if kind == "read" else value,
                        expected=last_version if kind == "cas" else None,
                        result=result,
                    )
                )
                if result is UNKNOWN:
                    self._wait_connected(zk)
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.errors.append(e)
        finally:
            zk.stop()
            zk.close()

    def _wait_connected(self, zk: KazooClient) -> None:
        """Until the client has a session again (or the workload stops)."""
        for _ in range(600):
            if self._stop.is_set() or zk.connected:
                return
            time.sleep(0.05)
