"""kazoo, a stock Python ZooKeeper client, against the server.

kazoo's recipes (Lock, Election, DataWatch, ChildrenWatch) are built from
sequential ephemeral nodes, one-shot watches and session semantics, so they
break if any of those is subtly wrong. The plain operations check what the
recipes rely on: versions, multi, sequence names, ephemerals and expiry.
"""

from __future__ import annotations

import contextlib
import queue
import re
import socket
import threading
import time

import pytest
from kazoo.exceptions import (
    BadVersionError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import KazooState

WAIT = 10.0  # seconds; generous bound for anything that should happen soon


def expect_next(q: queue.Queue, expected, timeout: float = WAIT) -> None:
    try:
        got = q.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"nothing arrived within {timeout}s, expected {expected!r}")
    assert got == expected


def wait_for(condition, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.05)


class TcpProxy:
    """Forwards one loopback port to the server until cut().

    Cutting it is how a test makes a client vanish without closing its
    session: the client's socket dies and its reconnects are refused, while
    its session lives on at the server until it expires.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self._target, timeout=WAIT)
            except OSError:
                return  # cut, or the server is gone
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            if self._cut:
                return
            self._cut = True
            # shutdown() wakes the thread blocked in accept(); close() alone
            # would leave the port listening.
            self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.fixture
def tcp_proxy(server):
    proxy = TcpProxy(server.sockaddr)
    yield proxy
    proxy.cut()


def run_in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# --- recipes ---------------------------------------------------------------


def test_lock_passes_to_waiter_on_release(kazoo_client):
    a, b = kazoo_client(), kazoo_client()
    lock_a, lock_b = a.Lock("/lock", "a"), b.Lock("/lock", "b")
    assert lock_a.acquire(timeout=WAIT)
    acquired = threading.Event()
    waiter = run_in_thread(lambda: lock_b.acquire(timeout=WAIT) and acquired.set())

    wait_for(lambda: len(lock_a.contenders()) == 2, "b queues behind a")
    assert lock_a.contenders() == ["a", "b"]
    assert not acquired.wait(0.5), "b got the lock while a held it"
    lock_a.release()
    assert acquired.wait(WAIT), "b did not get the lock after a released it"
    waiter.join(WAIT)
    assert lock_b.contenders() == ["b"]
    lock_b.release()
    assert lock_b.contenders() == []


def test_lock_of_a_closed_session_is_released(kazoo_client):
    a, b = kazoo_client(), kazoo_client()
    assert a.Lock("/lock", "a").acquire(timeout=WAIT)
    lock_b = b.Lock("/lock", "b")
    acquired = threading.Event()
    waiter = run_in_thread(lambda: lock_b.acquire(timeout=WAIT) and acquired.set())
    wait_for(lambda: len(lock_b.contenders()) == 2, "b queues behind a")
    assert not acquired.is_set()

    a.stop()  # closeSession: the server deletes a's lock node
    assert acquired.wait(WAIT), "b did not get the lock after a's session closed"
    waiter.join(WAIT)
    lock_b.release()


def test_election_moves_to_next_candidate_when_leader_stops(kazoo_client):
    a, b = kazoo_client(), kazoo_client()
    leaders: queue.Queue = queue.Queue()
    done = {"a": threading.Event(), "b": threading.Event()}

    def campaign(client, name):
        def lead():
            leaders.put(name)
            done[name].wait(WAIT * 3)

        def run():
            # a's client is stopped by the time it resigns, and that fails.
            with contextlib.suppress(Exception):
                client.Election("/election", name).run(lead)

        return run_in_thread(run)

    thread_a = campaign(a, "a")
    expect_next(leaders, "a")
    thread_b = campaign(b, "b")
    wait_for(lambda: len(b.Election("/election").contenders()) == 2, "b is a candidate")
    assert leaders.empty(), "b led while a still did"

    a.stop()
    expect_next(leaders, "b")
    assert b.Election("/election").contenders() == ["b"]
    for name in done:
        done[name].set()
    thread_a.join(WAIT)
    thread_b.join(WAIT)


def test_data_watch_sees_initial_value_each_set_and_delete(kazoo_client):
    a, b = kazoo_client(), kazoo_client()
    a.create("/dw", b"v0")
    seen: queue.Queue = queue.Queue()
    b.DataWatch("/dw", lambda data, stat: seen.put((data, stat and stat.version)))

    expect_next(seen, (b"v0", 0))
    a.set("/dw", b"v1")
    expect_next(seen, (b"v1", 1))
    a.set("/dw", b"v2")
    expect_next(seen, (b"v2", 2))
    a.delete("/dw")
    expect_next(seen, (None, None))
    a.create("/dw", b"again")
    expect_next(seen, (b"again", 0))


def test_children_watch_sees_children_added_and_removed(kazoo_client):
    a, b = kazoo_client(), kazoo_client()
    a.create("/cw")
    seen: queue.Queue = queue.Queue()
    b.ChildrenWatch("/cw", lambda children: seen.put(sorted(children)))

    expect_next(seen, [])
    a.create("/cw/one")
    expect_next(seen, ["one"])
    a.create("/cw/two", ephemeral=True)
    expect_next(seen, ["one", "two"])
    a.delete("/cw/one")
    expect_next(seen, ["two"])
    a.delete("/cw/two")
    expect_next(seen, [])


# --- plain operations ------------------------------------------------------


def test_ensure_path_creates_every_level_once(kazoo_client):
    a = kazoo_client()
    a.ensure_path("/e/f/g")
    a.ensure_path("/e/f/g")
    assert a.get_children("/e") == ["f"]
    assert a.get_children("/e/f") == ["g"]
    assert a.exists("/e/f/g").version == 0


def test_ephemeral_sequential_names_and_owner(kazoo_client):
    a, b = kazoo_client(), kazoo_client()
    a.create("/seq")
    first = a.create("/seq/n-", b"x", ephemeral=True, sequence=True)
    second = a.create("/seq/n-", b"y", ephemeral=True, sequence=True)
    a.delete(second)
    third = a.create("/seq/n-", sequence=True)

    assert re.fullmatch(r"/seq/n-\d{10}", first)
    # The counter is the parent's, and deletes do not reset it.
    assert [first, second, third] == [f"/seq/n-{i:010d}" for i in range(3)]
    session_id = a.client_id[0]
    assert b.exists(first).ephemeralOwner == session_id
    assert b.exists(third).ephemeralOwner == 0

    a.stop()  # closing the session deletes its ephemerals, not the rest
    assert b.get_children("/seq") == ["n-0000000002"]


def test_versions_and_bad_version(kazoo_client):
    a = kazoo_client()
    a.create("/v", b"1")
    stat = a.set("/v", b"2", version=0)
    assert stat.version == 1
    with pytest.raises(BadVersionError):
        a.set("/v", b"3", version=0)
    data, stat = a.get("/v")
    assert (data, stat.version, stat.dataLength) == (b"2", 1, 1)
    with pytest.raises(BadVersionError):
        a.delete("/v", version=5)
    a.delete("/v", version=1)
    assert a.exists("/v") is None


def test_transaction_applies_all_or_nothing(kazoo_client):
    a = kazoo_client()
    a.create("/tx", b"0")

    ok = a.transaction()
    ok.check("/tx", 0)
    ok.create("/tx/child", b"c")
    ok.set_data("/tx", b"1")
    assert ok.commit() == [True, "/tx/child", a.exists("/tx")]
    assert a.get("/tx")[0] == b"1"

    failing = a.transaction()
    failing.create("/tx/new", b"n")
    failing.set_data("/tx", b"2")
    failing.check("/tx", 0)  # the version is 1 now
    failing.delete("/tx/child")
    results = failing.commit()
    assert [type(r) for r in results] == [
        RolledBackError,
        RolledBackError,
        BadVersionError,
        RuntimeInconsistency,  # ops after the failing one
    ]
    assert a.exists("/tx/new") is None
    assert a.get("/tx")[0] == b"1"
    assert a.get_children("/tx") == ["child"]


def test_ephemeral_of_a_vanished_client_expires(kazoo_client, tcp_proxy):
    a = kazoo_client()
    # 1 s asks for 1000 ms, within [2, 20] ticks of 200 ms.
    vanishing = kazoo_client(hosts=tcp_proxy.address, timeout=1.0)
    vanishing.create("/gone", b"", ephemeral=True)
    deleted = threading.Event()
    a.exists("/gone", watch=lambda event: deleted.set())
    states: list[KazooState] = []
    vanishing.add_listener(states.append)

    tcp_proxy.cut()  # no closeSession reaches the server
    wait_for(lambda: KazooState.SUSPENDED in states, "client notices it lost the server")
    assert a.exists("/gone") is not None, "deleted before the session could expire"
    assert deleted.wait(WAIT), "ephemeral of an expired session not deleted"
    assert a.exists("/gone") is None
    with pytest.raises(NoNodeError):
        a.get("/gone")
