"""Differential test: one scripted scenario, byte-level protocol, two servers.

The same scenario of raw protocol operations runs against ZooKeeper 3.8 (the
reference) and against the server under test, and the two transcripts must
be equal. A transcript lists every request sent and every frame received:
reply headers and bodies, watch notifications in their place among the
replies, connection responses and closes.

Some values legitimately differ between two correct servers and are
normalised before comparing:

- a zxid becomes the label z#N of request N, the request whose frames
  showed it first (z#N.2 for a second new zxid in the same frames; 0 and
  -1 stay). Which replies share a zxid and which advance it is still
  compared, and a zxid that differs in one place does not relabel the rest
  of the transcript;
- ctime is "t" when it is a plausible wall-clock time (0 stays); mtime is
  "=ctime" for a node never modified and "t" for a plausible later time;
- session ids and ephemeralOwner become session names (A, B, ...), and the
  session password only shows its length;
- children, ephemeral lists and whoAmI identities are sorted.

The scenario never sleeps to let something happen. To see whether a write
fired a watch on another session, it pings that session: the server sends
a watch event before any later reply on the same connection (ZooKeeper's
ordering guarantee), so the events, if any, arrive before the ping's reply.
Only session expiry, which the server does on its own clock, is waited for,
with a deadline.

The candidate server is each kind in FJORD_INTEROP_SERVERS; with
FJORD_INTEROP_SERVERS=zookeeper two fresh ZooKeepers are compared, which
shows that the scenario itself is deterministic.
"""

from __future__ import annotations

import base64
import difflib
import functools
import hashlib
import time

import pytest
import zkwire as zk
from zkwire import (
    Acl,
    AddWatchMode,
    CreateMode,
    Err,
    Event,
    EventType,
    KeeperState,
    OpCode,
    Perm,
    Reply,
    Stat,
    WatcherType,
    name_of,
)

REQUESTED_TIMEOUT_MS = 30000  # clamped by the server to 20 ticks
SHORT_TIMEOUT_MS = 100  # clamped by the server to 2 ticks
KEEPALIVE_AFTER = 1.0  # seconds idle before a session is pinged
EXPIRY_WAIT = 10.0  # seconds; a 400 ms session must expire well within this
PLAUSIBLE_CLOCK_SKEW_MS = 24 * 3600 * 1000

ALICE = b"alice:secret"
ALICE_ID = "alice:" + base64.b64encode(hashlib.sha1(ALICE).digest()).decode()
ALICE_ALL = Acl(Perm.ALL, "digest", ALICE_ID)
ANYONE_READ = Acl(Perm.READ, "world", "anyone")


class Normaliser:
    """Turns raw values into ones that two correct servers agree on."""

    def __init__(self) -> None:
        self._zxids: dict[int, str] = {}
        self.session_names: dict[int, str] = {}
        # The number of the request whose frames are being normalised, and
        # how many new zxids they have shown so far.
        self.request = 0
        self._new_in_request = 0

    def begin_request(self) -> int:
        self.request += 1
        self._new_in_request = 0
        return self.request

    def zxid(self, zxid: int) -> int | str:
        if zxid in (0, -1):
            return zxid
        if zxid not in self._zxids:
            self._new_in_request += 1
            suffix = "" if self._new_in_request == 1 else f".{self._new_in_request}"
            self._zxids[zxid] = f"z#{self.request}{suffix}"
        return self._zxids[zxid]

    def session(self, session_id: int) -> int | str:
        if session_id == 0:
            return 0
        return self.session_names.get(session_id, f"unknown session {session_id:#x}")

    @staticmethod
    def _time(ms: int) -> int | str:
        plausible = abs(ms - time.time() * 1000) < PLAUSIBLE_CLOCK_SKEW_MS
        return "t" if plausible else ms

    def _mtime(self, s: Stat) -> int | str:
        if s.mzxid == s.czxid:
            return "=ctime" if s.mtime == s.ctime else f"{s.mtime} (ctime {s.ctime})"
        if s.mtime < s.ctime:
            return f"{s.mtime} (before ctime {s.ctime})"
        return self._time(s.mtime)

    def stat(self, s: Stat) -> tuple:
        return (
            ("czxid", self.zxid(s.czxid)),
            ("mzxid", self.zxid(s.mzxid)),
            ("ctime", self._time(s.ctime)),
            ("mtime", self._mtime(s)),
            ("version", s.version),
            ("cversion", s.cversion),
            ("aversion", s.aversion),
            ("owner", self.session(s.ephemeral_owner)),
            ("dataLength", s.data_length),
            ("numChildren", s.num_children),
            ("pzxid", self.zxid(s.pzxid)),
        )

    def value(self, value):
        if isinstance(value, Stat):
            return self.stat(value)
        if isinstance(value, zk.MultiResult):
            return (name_of(OpCode, value.op), name_of(Err, value.err), self.value(value.value))
        if isinstance(value, Acl):
            return f"{value.scheme}:{value.id}:{int(value.perms)}"
        if isinstance(value, (list, tuple)):
            return tuple(self.value(v) for v in value)
        return value

    def reply_body(self, reply: Reply):
        body = reply.body
        if body is not None and reply.op in (
            OpCode.GET_CHILDREN,
            OpCode.GET_EPHEMERALS,
            OpCode.WHO_AM_I,
        ):
            body = sorted(body)
        elif body is not None and reply.op == OpCode.GET_CHILDREN2:
            body = (sorted(body[0] or []), body[1])
        return self.value(body)


class Recorder:
    """Drives named sessions against one server and records a transcript."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.norm = Normaliser()
        self.clients: dict[str, zk.Client] = {}
        self.transcript: list[tuple] = []
        # What a reconnect needs: session id and password, highest zxid seen.
        self._credentials: dict[str, tuple[int, bytes]] = {}
        self._last_zxid: dict[str, int] = {}

    def _log(self, name: str, *entry) -> None:
        self.transcript.append((name, *entry))

    def _keep_sessions_alive(self) -> None:
        for client in self.clients.values():
            client.keepalive(KEEPALIVE_AFTER)

    def _record_frames(self, name: str, frames: list) -> None:
        for frame in frames:
            if isinstance(frame, Event):
                self._log(
                    name,
                    "event",
                    name_of(EventType, frame.type),
                    name_of(KeeperState, frame.state),
                    frame.path,
                    self.norm.zxid(frame.zxid),
                )
            else:
                if frame.zxid > 0:
                    self._last_zxid[name] = max(self._last_zxid.get(name, 0), frame.zxid)
                entry = [
                    "reply",
                    name_of(Err, frame.err),
                    self.norm.zxid(frame.zxid),
                    self.norm.reply_body(frame),
                ]
                if frame.trailing:
                    entry.append(f"{len(frame.trailing)} trailing bytes")
                self._log(name, *entry)

    def _drain(self, name: str) -> None:
        client = self.clients[name]
        self._record_frames(name, client.frames)
        client.frames.clear()
        if client.closed_by_server:
            self._log(name, "closed by server")
            del self.clients[name]

    def connect(self, name: str, timeout_ms: int = REQUESTED_TIMEOUT_MS, resume: bool = False):
        """Open a session, or with `resume` reconnect to `name`'s session
        with its id, password and last zxid, as a client does after it
        lost its connection."""
        self._keep_sessions_alive()
        if name in self.clients:
            self.clients.pop(name).close()
        session_id, passwd = self._credentials[name] if resume else (0, bytes(16))
        self._log(name, "connect", "resume" if resume else "new", timeout_ms)
        client = zk.Client.connect(
            self.address,
            timeout_ms,
            session_id=session_id,
            passwd=passwd,
            last_zxid=self._last_zxid.get(name, 0) if resume else 0,
        )
        response = client.connect_response
        if not resume:
            self._credentials[name] = (response.session_id, response.passwd)
            self.norm.session_names[response.session_id] = name
        self._log(
            name,
            "connected",
            response.timeout_ms,
            self.norm.session(response.session_id),
            f"password {len(response.passwd)} bytes"
            + (" all zero" if not any(response.passwd) else ""),
            response.read_only,
        )
        self.clients[name] = client
        if response.session_id == 0:
            # A refused session: the server closes the connection next.
            client.wait_closed(5.0)
            self._drain(name)

    def call(self, name: str, request: zk.Request, watchers: tuple[str, ...] = ()) -> Reply | None:
        """Send one request as `name`, record everything up to its reply,
        then ping each session in `watchers` to collect the watch events
        the request fired there."""
        self._keep_sessions_alive()
        self._log(name, "send", f"#{self.norm.begin_request()}", request.summary)
        client = self.clients[name]
        try:
            reply = client.call(request)
        except zk.ProtocolError:
            if not client.closed_by_server:
                raise
            reply = None
        self._drain(name)
        for watcher in watchers:
            self.call(watcher, zk.ping())
        return reply

    def expect_events(self, name: str, count: int, timeout: float = EXPIRY_WAIT) -> None:
        """Wait for `count` watch events on `name` that the server sends on
        its own schedule (session expiry), keeping the others alive."""
        client = self.clients[name]
        deadline = time.monotonic() + timeout
        got = 0
        while got < count and time.monotonic() < deadline:
            self._keep_sessions_alive()
            if isinstance(client.read(0.2), Event):
                got += 1
        self._drain(name)
        if got < count:
            self._log(name, f"timed out after {got} of {count} events")

    def drop(self, name: str) -> None:
        """Close the socket without closeSession, as a crashed client."""
        self._log(name, "drop connection")
        self.clients.pop(name).close()

    def expect_closed(self, name: str) -> None:
        """Record whether the server closes `name`'s connection now."""
        client = self.clients[name]
        if not client.wait_closed(5.0):
            self._log(name, "still open")
        self._drain(name)


def scenario(rec: Recorder) -> None:
    """The script. Sessions: A writes, B watches, C authenticates and owns
    an ephemeral, D has a short timeout and is abandoned to expire."""
    a, b, c = (functools.partial(rec.call, name) for name in "ABC")

    rec.connect("A")
    rec.connect("B")
    rec.connect("C")

    # The initial tree.
    a(zk.exists("/"))
    a(zk.get_children("/"))
    a(zk.exists("/zookeeper"))
    a(zk.get_children("/zookeeper"))
    a(zk.get_all_children_number("/"))
    a(zk.who_am_i())

    # Creates in every mode.
    a(zk.create("/app", b"root"))
    a(zk.create("/app/p", b"p", op=OpCode.CREATE2))
    a(zk.create("/app/e", b"e", CreateMode.EPHEMERAL, op=OpCode.CREATE2))
    a(zk.create("/app/s-", b"s", CreateMode.PERSISTENT_SEQUENTIAL, op=OpCode.CREATE2))
    a(zk.create("/app/es-", b"es", CreateMode.EPHEMERAL_SEQUENTIAL))
    a(zk.create("/app/c", b"", CreateMode.CONTAINER, op=OpCode.CREATE_CONTAINER))
    a(zk.create("/app/c/kid", b""))
    a(zk.create("/app/null", None, op=OpCode.CREATE2))
    a(zk.get_data("/app/null"))

    # Errors. Failed writes still go through the write pipeline.
    a(zk.create("/app", b""))
    a(zk.create("/missing/x", b""))
    a(zk.create("/app/e/x", b""))
    a(zk.create("app", b""))
    a(zk.create("/app/", b""))
    a(zk.create("/app//x", b""))
    a(zk.create_ttl("/app/ttl", b"", CreateMode.TTL, 60000))
    a(zk.create("/app/bad-mode", b"", 7))
    a(zk.delete("/app"))
    a(zk.delete("/app/p", version=5))
    a(zk.delete("/missing"))
    a(zk.delete("/"))
    a(zk.set_data("/app/p", b"x", version=9))
    a(zk.set_data("/missing", b"x"))
    a(zk.exists("no-slash"))
    a(zk.get_data("no-slash"))
    a(zk.get_all_children_number("/missing"))

    # Reads with stats.
    a(zk.set_data("/app/p", b"p1", version=0))
    a(zk.get_data("/app/p"))
    a(zk.exists("/app/p"))
    a(zk.get_children("/app"))
    a(zk.get_children2("/app"))
    a(zk.get_ephemerals("/"))
    a(zk.get_ephemerals("/app/e"))
    a(zk.get_all_children_number("/app"))
    a(zk.sync("/app"))
    # A container outlives its last child until the server's periodic check.
    a(zk.delete("/app/c/kid"))
    a(zk.exists("/app/c"))

    # One-shot watches set by B, fired by A's writes. Data and exists
    # watches on one path are one watch: a change fires a single event.
    b(zk.get_data("/app/p", watch=True))
    b(zk.exists("/app/p", watch=True))
    b(zk.exists("/app/new", watch=True))
    b(zk.get_children("/app", watch=True))
    a(zk.set_data("/app/p", b"p2"), watchers=("B",))
    a(zk.create("/app/new", b"n"), watchers=("B",))
    a(zk.set_data("/app/p", b"p3"), watchers=("B",))  # spent: no event
    # A watcher's own write: the event comes before the write's reply.
    a(zk.get_data("/app/new", watch=True))
    a(zk.set_data("/app/new", b"n1"))

    # Persistent and persistent-recursive watches.
    b(zk.add_watch("/pw", AddWatchMode.PERSISTENT))
    b(zk.add_watch("/rw", AddWatchMode.PERSISTENT_RECURSIVE))
    a(zk.create("/pw", b""), watchers=("B",))
    a(zk.create("/pw/a", b""), watchers=("B",))
    a(zk.set_data("/pw/a", b"x"), watchers=("B",))
    a(zk.set_data("/pw", b"x"), watchers=("B",))
    a(zk.create("/rw", b""), watchers=("B",))
    a(zk.create("/rw/a", b""), watchers=("B",))
    a(zk.create("/rw/a/b", b""), watchers=("B",))
    a(zk.set_data("/rw/a/b", b"x"), watchers=("B",))
    a(zk.delete("/rw/a/b"), watchers=("B",))

    # removeWatches: the server sends no events for removed watches.
    b(zk.remove_watches("/pw", WatcherType.ANY))
    b(zk.remove_watches("/pw", WatcherType.ANY))
    a(zk.set_data("/pw", b"y"), watchers=("B",))
    b(zk.get_data("/app/new", watch=True))
    b(zk.remove_watches("/app/new", WatcherType.CHILDREN))
    b(zk.remove_watches("/app/new", WatcherType.DATA))
    a(zk.set_data("/app/new", b"n2"), watchers=("B",))
    b(zk.remove_watches("/rw", WatcherType.DATA))
    b(zk.remove_watches("/rw", WatcherType.CHILDREN))
    b(zk.remove_watches("/rw", WatcherType.ANY))
    a(zk.create("/rw/z", b""), watchers=("B",))

    # multi: all or nothing, with per-op results.
    b(zk.get_children("/app", watch=True))
    b(zk.exists("/app/m1", watch=True))
    a(
        zk.multi(
            [
                zk.check("/app/p", 3),
                zk.create("/app/m1", b"m"),
                zk.create("/app/m2", b"", op=OpCode.CREATE2),
                zk.set_data("/app/p", b"p4", version=3),
                zk.delete("/app/new"),
            ]
        ),
        watchers=("B",),
    )
    a(
        zk.multi(
            [
                zk.create("/app/m3", b""),
                zk.set_data("/app/p", b"never", version=99),
                zk.delete("/app/m1"),
            ]
        )
    )
    a(zk.exists("/app/m3"))
    a(zk.multi([zk.create("/app/m4", b""), zk.create("/app/e/x", b"")]))
    a(zk.multi([]))

    # Digest auth and an ACL that shuts B out.
    c(zk.auth("digest", ALICE))
    c(zk.who_am_i())
    c(zk.create("/secure", b"s", acl=[ALICE_ALL]))
    c(zk.get_acl("/secure"))
    b(zk.get_data("/secure"))
    b(zk.set_data("/secure", b"x"))
    b(zk.exists("/secure"))
    b(zk.create("/secure/x", b""))
    b(zk.create("/auth-acl", b"", acl=[Acl(Perm.ALL, "auth", "")]))
    c(zk.set_acl("/secure", [ANYONE_READ, ALICE_ALL], version=0))
    c(zk.set_acl("/secure", [ANYONE_READ], version=0))
    b(zk.get_data("/secure"))

    # Reconnect with the session id, then setWatches with an old zxid:
    # watches whose node changed since fire at once.
    c(zk.create("/app/ce", b"", CreateMode.EPHEMERAL))
    stat = c(zk.exists("/app/p"))
    seen = stat.body.mzxid if stat and isinstance(stat.body, Stat) else 0
    a(zk.set_data("/app/p", b"p5"))
    a(zk.delete("/app/m2"))
    rec.connect("C", resume=True)
    c(zk.exists("/app/ce"))
    c(zk.who_am_i())  # auth belongs to the old connection
    c(
        zk.set_watches(
            seen,
            data=("/app/p", "/app/m2", "/app/m1"),
            exist=("/app/m1", "/app/none"),
            child=("/app",),
        )
    )
    a(zk.create("/app/none", b""), watchers=("C",))

    # closeSession deletes the session's ephemerals and fires watches.
    b(zk.exists("/app/ce", watch=True))
    b(zk.get_children("/app", watch=True))
    c(zk.close_session(), watchers=("B",))
    rec.expect_closed("C")
    rec.connect("C", resume=True)

    # Expiry: D vanishes without closeSession.
    rec.connect("D", timeout_ms=SHORT_TIMEOUT_MS)
    rec.call("D", zk.create("/app/de", b"", CreateMode.EPHEMERAL))
    b(zk.exists("/app/de", watch=True))
    rec.drop("D")
    rec.expect_events("B", 1)
    a(zk.exists("/app/de"))
    rec.connect("D", timeout_ms=SHORT_TIMEOUT_MS, resume=True)

    # A failed auth ends the connection. (An unknown opcode is tested on its
    # own below: there fjord deliberately differs from ZooKeeper.)
    b(zk.exists("/app"))
    b(zk.auth("no-such-scheme", b"x"))
    rec.expect_closed("B")

    # The final state.
    a(zk.get_children2("/app"))
    a(zk.get_all_children_number("/"))
    a(zk.get_ephemerals("/"))
    a(zk.close_session())


def run_scenario(server) -> list[tuple]:
    """The normalised transcript of the scenario against `server`. A
    protocol or socket error ends the scenario, and the transcript."""
    rec = Recorder(server.sockaddr)
    try:
        scenario(rec)
    except (zk.ProtocolError, OSError) as error:
        rec.transcript.append(("scenario", "aborted:", repr(error)))
    finally:
        for client in rec.clients.values():
            client.close()
    return rec.transcript


def format_entry(entry: tuple) -> str:
    return " ".join(str(x) for x in entry)


def test_transcript_matches_zookeeper(server, start_server):
    reference = run_scenario(start_server("zookeeper"))
    candidate = run_scenario(server)
    if candidate != reference:
        diff = difflib.unified_diff(
            [format_entry(e) for e in reference],
            [format_entry(e) for e in candidate],
            fromfile="zookeeper",
            tofile=server.kind,
            lineterm="",
            n=4,
        )
        pytest.fail("transcripts differ:\n" + "\n".join(diff), pytrace=False)


def split_steps(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Group formatted lines into (request or connect line, what followed)."""
    steps: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.split(" ")[1] in ("send", "connect"):
            steps.append((line, []))
        else:
            steps[-1][1].append(line)
    return steps


def test_zookeeper_transcript_has_known_facts(start_server):
    """Pins what ZooKeeper 3.8 itself does in the scenario, so that the
    scenario is known to exercise what it claims to."""
    lines = [format_entry(e) for e in run_scenario(start_server("zookeeper"))]
    steps = split_steps(lines)
    text = "\n".join(lines)

    def find(summary: str) -> int:
        for i, (line, _) in enumerate(steps):
            if line.split(" ", 3)[-1].startswith(summary):
                return i
        pytest.fail(f"no request {summary!r} in transcript:\n{text}")

    def after(summary: str, then: int = 0) -> list[str]:
        """What followed the first request whose summary starts with
        `summary` or, with `then`, the `then`-th step after it."""
        return steps[find(summary) + then][1]

    def z(summary: str, then: int = 0) -> str:
        """The label of a zxid first seen in reply to that request."""
        return "z" + steps[find(summary) + then][0].split()[2]

    assert not [line for line in lines if "aborted:" in line or "timed out" in line], text
    assert len([line for line in lines if line.split()[1] == "send"]) >= 60
    # Timeouts are clamped to [2, 20] ticks; a closed or expired session
    # gets an all-zero answer and then a close.
    assert lines[1] == "A connected 4000 A password 16 bytes False"
    assert "D connected 400 D password 16 bytes False" in lines
    refused = ["connected 0 0 password 16 bytes all zero False", "closed by server"]
    assert [line.split(" ", 1)[1] for line in after("CLOSE_SESSION", then=2)] == refused
    assert [line.split(" ", 1)[1] for line in after("AUTH no-such-scheme", then=-2)] == refused

    # The initial tree, and the names and stats of what was created.
    root = "('cversion', -1), ('aversion', 0), ('owner', 0), ('dataLength', 0), ('numChildren', 1)"
    assert root in after("EXISTS /")[0]
    assert after("GET_CHILDREN /") == ["A reply OK z#1 ('zookeeper',)"]
    assert after("GET_CHILDREN /zookeeper") == ["A reply OK z#1 ('config', 'quota')"]
    assert after("GET_ALL_CHILDREN_NUMBER /") == ["A reply OK z#1 3"]
    assert after("CREATE2 /app/s-")[0].startswith(
        f"A reply OK {z('CREATE2 /app/s-')} ('/app/s-0000000002'"
    )
    assert after("CREATE /app/es-") == [f"A reply OK {z('CREATE /app/es-')} /app/es-0000000003"]
    assert "('owner', 'A')" in after("CREATE2 /app/e ")[0]
    assert after("GET_DATA /app/null")[0].startswith("A reply OK z#14 (None,")
    # getEphemerals matches a string prefix, not a subtree.
    assert after("GET_EPHEMERALS /app/e")[0].endswith(" ('/app/e', '/app/es-0000000003')")

    # A failed write takes a zxid of its own; a read answers with the last.
    for summary, err in {
        "CREATE /app PERSISTENT data=b''": "NODE_EXISTS",
        "CREATE /missing/x": "NO_NODE",
        "CREATE /app/e/x": "NO_CHILDREN_FOR_EPHEMERALS",
        "CREATE app ": "BAD_ARGUMENTS",
        "CREATE /app/ ": "BAD_ARGUMENTS",
        "CREATE /app//x": "NO_NODE",
        "CREATE_TTL": "UNIMPLEMENTED",
        "CREATE /app/bad-mode": "BAD_ARGUMENTS",
        "DELETE /app version": "NOT_EMPTY",
        "DELETE /app/p version=5": "BAD_VERSION",
        "DELETE / ": "BAD_ARGUMENTS",
        "SET_DATA /missing": "NO_NODE",
        "SET_DATA /secure": "NO_AUTH",
        "CREATE /secure/x": "NO_AUTH",
        "CREATE /auth-acl": "INVALID_ACL",
        "SET_ACL /secure acl=world:anyone:1 version=0": "BAD_VERSION",
    }.items():
        assert after(summary)[0].split(" ", 1)[1] == f"reply {err} {z(summary)} None", summary
    for summary, err in {
        "EXISTS no-slash": "NO_NODE",
        "GET_DATA no-slash": "NO_NODE",
        "GET_ALL_CHILDREN_NUMBER /missing": "NO_NODE",
        "GET_DATA /secure": "NO_AUTH",
    }.items():
        assert after(summary)[0].split()[2] == err, summary
        assert after(summary)[0].split()[3] != z(summary), summary
    assert after("EXISTS /secure")[0].startswith("B reply OK")  # exists checks no ACL

    # One-shot watches: a data and an exists watch on one path fire once;
    # a create fires the node's watch before its parent's; a fired watch is
    # spent; the writer's own watch fires before its write's reply.
    p2 = "SET_DATA /app/p data=b'p2'"
    assert after(p2, then=1) == [
        "B event NODE_DATA_CHANGED SYNC_CONNECTED /app/p -1",
        f"B reply OK {z(p2)} None",
    ]
    assert after("CREATE /app/new", then=1)[:2] == [
        "B event NODE_CREATED SYNC_CONNECTED /app/new -1",
        "B event NODE_CHILDREN_CHANGED SYNC_CONNECTED /app -1",
    ]
    assert len(after("SET_DATA /app/p data=b'p3'", then=1)) == 1
    assert after("SET_DATA /app/new data=b'n1'")[0] == (
        "A event NODE_DATA_CHANGED SYNC_CONNECTED /app/new -1"
    )

    # Persistent watches: no event for a child's data change; recursive
    # ones never send NodeChildrenChanged; removing a watch sends nothing.
    assert after("ADD_WATCH /pw")[0].endswith(" 0")
    assert after("CREATE /pw/a", then=1)[0] == "B event NODE_CHILDREN_CHANGED SYNC_CONNECTED /pw -1"
    assert len(after("SET_DATA /pw/a", then=1)) == 1
    assert after("DELETE /rw/a/b", then=1)[0] == "B event NODE_DELETED SYNC_CONNECTED /rw/a/b -1"
    assert not [line for line in lines if "NODE_CHILDREN_CHANGED SYNC_CONNECTED /rw" in line]
    removals = [(s.split(" ", 3)[-1], b[0].split()[2]) for s, b in steps if "REMOVE_WATCHES" in s]
    assert removals == [
        ("REMOVE_WATCHES /pw ANY", "OK"),
        ("REMOVE_WATCHES /pw ANY", "NO_WATCHER"),
        ("REMOVE_WATCHES /app/new CHILDREN", "NO_WATCHER"),
        ("REMOVE_WATCHES /app/new DATA", "OK"),
        ("REMOVE_WATCHES /rw DATA", "OK"),
        ("REMOVE_WATCHES /rw CHILDREN", "OK"),
        ("REMOVE_WATCHES /rw ANY", "NO_WATCHER"),
    ]
    assert not [line for line in lines if "WATCH_REMOVED" in line]
    assert len(after("SET_DATA /app/new data=b'n2'", then=1)) == 1

    # multi: a create2 inside it answers like a create (no stat); a failed
    # multi has an OK header, per-op results, and applies nothing.
    assert after("MULTI [CHECK")[0].startswith(
        f"A reply OK {z('MULTI [CHECK')} (('CHECK', 'OK', None), ('CREATE', 'OK', '/app/m1'),"
        " ('CREATE', 'OK', '/app/m2'), ('SET_DATA', 'OK', "
    )
    assert after("MULTI [CHECK", then=1)[:2] == [
        "B event NODE_CREATED SYNC_CONNECTED /app/m1 -1",
        "B event NODE_CHILDREN_CHANGED SYNC_CONNECTED /app -1",
    ]
    assert after("MULTI [CREATE /app/m3") == [
        f"A reply OK {z('MULTI [CREATE /app/m3')} (('ERROR', 'OK', 0),"
        " ('ERROR', 'BAD_VERSION', -103), ('ERROR', 'RUNTIME_INCONSISTENCY', -2))"
    ]
    assert after("EXISTS /app/m3")[0].split()[2] == "NO_NODE"
    assert after("MULTI []") == [f"A reply OK {z('MULTI []')} ()"]

    # Auth answers with zxid 0; identities belong to the connection.
    assert after("AUTH digest") == ["C reply OK 0 None"]
    assert after("WHO_AM_I") == ["A reply OK z#1 (('ip', '127.0.0.1'),)"]
    assert after("AUTH digest", then=1)[0].endswith(" (('digest', 'alice'), ('ip', '127.0.0.1'))")
    assert after("EXISTS /app/ce", then=1)[0].endswith(" (('ip', '127.0.0.1'),)")
    assert after("SET_ACL /secure acl=world:anyone:1,")[0].split()[2] == "OK"
    assert after("GET_DATA /secure", then=7)[0].startswith("B reply OK")

    # After a reconnect, setWatches fires what changed before its reply.
    assert after("SET_WATCHES")[:4] == [
        "C event NODE_DATA_CHANGED SYNC_CONNECTED /app/p -1",
        "C event NODE_DELETED SYNC_CONNECTED /app/m2 -1",
        "C event NODE_CREATED SYNC_CONNECTED /app/m1 -1",
        "C event NODE_CHILDREN_CHANGED SYNC_CONNECTED /app -1",
    ]
    assert after("SET_WATCHES")[4].startswith("C reply OK")
    assert (
        after("CREATE /app/none", then=1)[0] == "C event NODE_CREATED SYNC_CONNECTED /app/none -1"
    )

    # closeSession takes a zxid, deletes the ephemerals and fires B's
    # watches (the node's before its parent's); then the server hangs up.
    assert after("CLOSE_SESSION") == [f"C reply OK {z('CLOSE_SESSION')} None"]
    assert after("CLOSE_SESSION", then=1) == [
        "B event NODE_DELETED SYNC_CONNECTED /app/ce -1",
        "B event NODE_CHILDREN_CHANGED SYNC_CONNECTED /app -1",
        f"B reply OK {z('CLOSE_SESSION')} None",
        "C closed by server",
    ]
    # Expiry of an abandoned session deletes its ephemeral and takes a zxid.
    assert after("EXISTS /app/de watch")[1:] == [
        "D drop connection",
        "B event NODE_DELETED SYNC_CONNECTED /app/de -1",
    ]
    assert after("EXISTS /app/de watch", then=1) == [
        f"A reply NO_NODE {z('EXISTS /app/de watch', then=1)} None"
    ]

    # A failed auth ends the connection.
    assert after("AUTH no-such-scheme") == ["B reply AUTH_FAILED 0 None", "B closed by server"]


def test_unknown_opcode(server):
    """An opcode the protocol does not define gets Unimplemented (-6) with
    zxid -1. ZooKeeper 3.8 then closes the connection; fjord keeps it open,
    so a client probing for newer operations can carry on, and its session
    is unaffected either way."""
    client = zk.Client.connect(server.sockaddr)
    try:
        reply = client.call(zk.unknown(999))
        assert (reply.err, reply.zxid) == (zk.Err.UNIMPLEMENTED, -1)
        if server.kind == "zookeeper":
            assert client.read(5.0) is None and client.closed_by_server
        else:
            follow_up = client.call(zk.exists("/zookeeper"))
            assert follow_up.err == zk.Err.OK
            assert not client.closed_by_server
    finally:
        client.close()
