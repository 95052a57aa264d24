"""A small raw ZooKeeper client that shows every frame the server sends.

Why not kazoo: a real client hides the wire. It retries, re-registers
watches, turns removeWatches into local events and never sends addWatch or
setWatches. The differential test has to see exactly what a server put on
the socket: each reply header (xid, zxid, error code), each body, and each
watch notification in its place among the replies.

The wire format is ZooKeeper's: every message is a 4-byte big-endian length
and then a jute record. Jute integers are big-endian, a bool is one byte,
strings and buffers are an i32 length plus bytes (-1 means null), and
vectors are an i32 count plus the items. The record layouts follow
`zookeeper.jute` of ZooKeeper 3.8.

Everything here is synchronous and single-threaded on purpose: a caller
reads a connection only when it asks to, so a scripted scenario observes
frames in an order that does not depend on thread scheduling.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import socket
import struct
import time
from dataclasses import dataclass

# A frame larger than this is a protocol error, not a reason to allocate.
MAX_FRAME = 4 * 1024 * 1024
SESSION_PASSWORD_LEN = 16


class ProtocolError(Exception):
    """The server sent something that is not valid ZooKeeper protocol."""


class OpCode(enum.IntEnum):
    CREATE = 1
    DELETE = 2
    EXISTS = 3
    GET_DATA = 4
    SET_DATA = 5
    GET_ACL = 6
    SET_ACL = 7
    GET_CHILDREN = 8
    SYNC = 9
    PING = 11
    GET_CHILDREN2 = 12
    CHECK = 13
    MULTI = 14
    CREATE2 = 15
    REMOVE_WATCHES = 18
    CREATE_CONTAINER = 19
    CREATE_TTL = 21
    AUTH = 100
    SET_WATCHES = 101
    GET_EPHEMERALS = 103
    GET_ALL_CHILDREN_NUMBER = 104
    ADD_WATCH = 106
    WHO_AM_I = 107
    CLOSE_SESSION = -11
    # Inside a multi reply, the result of a failed or skipped operation.
    ERROR = -1


class Err(enum.IntEnum):
    OK = 0
    SYSTEM_ERROR = -1
    RUNTIME_INCONSISTENCY = -2
    CONNECTION_LOSS = -4
    UNIMPLEMENTED = -6
    BAD_ARGUMENTS = -8
    NO_NODE = -101
    NO_AUTH = -102
    BAD_VERSION = -103
    NO_CHILDREN_FOR_EPHEMERALS = -108
    NODE_EXISTS = -110
    NOT_EMPTY = -111
    SESSION_EXPIRED = -112
    INVALID_ACL = -114
    AUTH_FAILED = -115
    NO_WATCHER = -121


class CreateMode(enum.IntEnum):
    PERSISTENT = 0
    EPHEMERAL = 1
    PERSISTENT_SEQUENTIAL = 2
    EPHEMERAL_SEQUENTIAL = 3
    CONTAINER = 4
    TTL = 5
    PERSISTENT_SEQUENTIAL_WITH_TTL = 6


class EventType(enum.IntEnum):
    NONE = -1
    NODE_CREATED = 1
    NODE_DELETED = 2
    NODE_DATA_CHANGED = 3
    NODE_CHILDREN_CHANGED = 4
    DATA_WATCH_REMOVED = 5
    CHILD_WATCH_REMOVED = 6
    PERSISTENT_WATCH_REMOVED = 7


class KeeperState(enum.IntEnum):
    DISCONNECTED = 0
    SYNC_CONNECTED = 3
    AUTH_FAILED = 4
    CONNECTED_READ_ONLY = 5
    EXPIRED = -112
    CLOSED = 7


class AddWatchMode(enum.IntEnum):
    PERSISTENT = 0
    PERSISTENT_RECURSIVE = 1


class WatcherType(enum.IntEnum):
    """The `type` field of a removeWatches request."""

    CHILDREN = 1
    DATA = 2
    ANY = 3


class Xid(enum.IntEnum):
    """Reserved xids; ordinary requests count up from 1."""

    NOTIFICATION = -1
    PING = -2
    AUTH = -4
    SET_WATCHES = -8


class Perm(enum.IntFlag):
    READ = 1
    WRITE = 2
    CREATE = 4
    DELETE = 8
    ADMIN = 16
    ALL = 31


@dataclass(frozen=True)
class Acl:
    perms: int
    scheme: str
    id: str


OPEN_ACL_UNSAFE = (Acl(Perm.ALL, "world", "anyone"),)


@dataclass(frozen=True)
class Stat:
    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int
    data_length: int
    num_children: int
    pzxid: int


# --- jute primitives -------------------------------------------------------


class JuteWriter:
    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def int(self, value: int) -> JuteWriter:
        self._parts.append(struct.pack(">i", value))
        return self

    def long(self, value: int) -> JuteWriter:
        self._parts.append(struct.pack(">q", value))
        return self

    def bool(self, value: bool) -> JuteWriter:
        self._parts.append(b"\x01" if value else b"\x00")
        return self

    def buffer(self, value: bytes | None) -> JuteWriter:
        if value is None:
            return self.int(-1)
        self.int(len(value))
        self._parts.append(value)
        return self

    def string(self, value: str | None) -> JuteWriter:
        return self.buffer(None if value is None else value.encode())

    def strings(self, values: list[str] | tuple[str, ...]) -> JuteWriter:
        self.int(len(values))
        for value in values:
            self.string(value)
        return self

    def acls(self, acls: tuple[Acl, ...] | list[Acl]) -> JuteWriter:
        self.int(len(acls))
        for acl in acls:
            self.int(acl.perms).string(acl.scheme).string(acl.id)
        return self

    def raw(self, value: bytes) -> JuteWriter:
        self._parts.append(value)
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class JuteReader:
    """Reads jute values and checks every length against what remains."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining():
            raise ProtocolError(f"need {n} bytes at offset {self._pos}, {self.remaining()} remain")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def int(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def long(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def bool(self) -> bool:
        return self._take(1) != b"\x00"

    def buffer(self) -> bytes | None:
        length = self.int()
        return None if length == -1 else self._take(length)

    def string(self) -> str | None:
        value = self.buffer()
        return None if value is None else value.decode()

    def _count(self) -> int:
        count = self.int()
        # Every vector item takes at least four bytes on the wire.
        if count < -1 or count * 4 > self.remaining():
            raise ProtocolError(f"vector count {count} exceeds the frame")
        return count

    def vector(self, read_item) -> list | None:
        count = self._count()
        return None if count == -1 else [read_item(self) for _ in range(count)]

    def strings(self) -> list[str] | None:
        return self.vector(JuteReader.string)

    def acls(self) -> list[Acl] | None:
        return self.vector(lambda r: Acl(r.int(), r.string(), r.string()))

    def stat(self) -> Stat:
        return Stat(
            czxid=self.long(),
            mzxid=self.long(),
            ctime=self.long(),
            mtime=self.long(),
            version=self.int(),
            cversion=self.int(),
            aversion=self.int(),
            ephemeral_owner=self.long(),
            data_length=self.int(),
            num_children=self.int(),
            pzxid=self.long(),
        )

    def rest(self) -> bytes:
        return self._take(self.remaining())


# --- requests --------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request: its opcode, its encoded body, a fixed xid if the
    protocol reserves one for it (ping, auth, setWatches), and a one-line
    summary for transcripts."""

    op: int
    body: bytes = b""
    xid: int | None = None
    summary: str = ""


def name_of(enum_type: type[enum.IntEnum], value: int) -> str:
    """The member's name, or the number if the protocol defines none."""
    try:
        return enum_type(value).name
    except ValueError:
        return str(value)


def _acl_note(acl: tuple[Acl, ...] | list[Acl]) -> str:
    if tuple(acl) == OPEN_ACL_UNSAFE:
        return ""
    return " acl=" + ",".join(f"{a.scheme}:{a.id}:{int(a.perms)}" for a in acl)


def _path_request(op: OpCode, path: str) -> Request:
    return Request(op, JuteWriter().string(path).getvalue(), summary=f"{op.name} {path}")


def _watch_request(op: OpCode, path: str, watch: bool) -> Request:
    body = JuteWriter().string(path).bool(watch).getvalue()
    return Request(op, body, summary=f"{op.name} {path}" + (" watch" if watch else ""))


def create(
    path: str,
    data: bytes | None = b"",
    mode: int = CreateMode.PERSISTENT,
    acl: tuple[Acl, ...] | list[Acl] = OPEN_ACL_UNSAFE,
    op: OpCode = OpCode.CREATE,
) -> Request:
    """create (1), create2 (15) or createContainer (19): same request record."""
    body = JuteWriter().string(path).buffer(data).acls(acl).int(mode).getvalue()
    summary = f"{op.name} {path} {name_of(CreateMode, mode)} data={data!r}{_acl_note(acl)}"
    return Request(op, body, summary=summary)


def create_ttl(path: str, data: bytes, mode: int, ttl_ms: int) -> Request:
    body = JuteWriter().string(path).buffer(data).acls(OPEN_ACL_UNSAFE).int(mode).long(ttl_ms)
    summary = f"CREATE_TTL {path} {name_of(CreateMode, mode)} ttl={ttl_ms}"
    return Request(OpCode.CREATE_TTL, body.getvalue(), summary=summary)


def delete(path: str, version: int = -1) -> Request:
    body = JuteWriter().string(path).int(version).getvalue()
    return Request(OpCode.DELETE, body, summary=f"DELETE {path} version={version}")


def exists(path: str, watch: bool = False) -> Request:
    return _watch_request(OpCode.EXISTS, path, watch)


def get_data(path: str, watch: bool = False) -> Request:
    return _watch_request(OpCode.GET_DATA, path, watch)


def set_data(path: str, data: bytes | None, version: int = -1) -> Request:
    body = JuteWriter().string(path).buffer(data).int(version).getvalue()
    summary = f"SET_DATA {path} data={data!r} version={version}"
    return Request(OpCode.SET_DATA, body, summary=summary)


def get_acl(path: str) -> Request:
    return _path_request(OpCode.GET_ACL, path)


def set_acl(path: str, acl: tuple[Acl, ...] | list[Acl], version: int = -1) -> Request:
    body = JuteWriter().string(path).acls(acl).int(version).getvalue()
    summary = f"SET_ACL {path}{_acl_note(acl) or ' acl=open'} version={version}"
    return Request(OpCode.SET_ACL, body, summary=summary)


def get_children(path: str, watch: bool = False) -> Request:
    return _watch_request(OpCode.GET_CHILDREN, path, watch)


def get_children2(path: str, watch: bool = False) -> Request:
    return _watch_request(OpCode.GET_CHILDREN2, path, watch)


def check(path: str, version: int) -> Request:
    """Only inside multi: ZooKeeper 3.8.0 fails a standalone check (it
    cannot serialise the reply) and drops the connection."""
    body = JuteWriter().string(path).int(version).getvalue()
    return Request(OpCode.CHECK, body, summary=f"CHECK {path} version={version}")


def sync(path: str) -> Request:
    return _path_request(OpCode.SYNC, path)


def ping() -> Request:
    return Request(OpCode.PING, xid=Xid.PING, summary="PING")


def multi(ops: list[Request]) -> Request:
    """A transaction: each op as a MultiHeader {type, done, err} plus its
    request record, then the terminating header {-1, true, -1}."""
    body = JuteWriter()
    for op in ops:
        body.int(op.op).bool(False).int(-1).raw(op.body)
    body.int(-1).bool(True).int(-1)
    summary = "MULTI [" + "; ".join(op.summary for op in ops) + "]"
    return Request(OpCode.MULTI, body.getvalue(), summary=summary)


def add_watch(path: str, mode: AddWatchMode) -> Request:
    body = JuteWriter().string(path).int(mode).getvalue()
    return Request(OpCode.ADD_WATCH, body, summary=f"ADD_WATCH {path} {mode.name}")


def remove_watches(path: str, watcher_type: WatcherType) -> Request:
    body = JuteWriter().string(path).int(watcher_type).getvalue()
    summary = f"REMOVE_WATCHES {path} {watcher_type.name}"
    return Request(OpCode.REMOVE_WATCHES, body, summary=summary)


def set_watches(
    relative_zxid: int,
    data: tuple[str, ...] = (),
    exist: tuple[str, ...] = (),
    child: tuple[str, ...] = (),
) -> Request:
    """The summary leaves out the zxid: its raw value differs by server."""
    body = JuteWriter().long(relative_zxid).strings(data).strings(exist).strings(child)
    summary = f"SET_WATCHES data={list(data)} exist={list(exist)} child={list(child)}"
    return Request(OpCode.SET_WATCHES, body.getvalue(), xid=Xid.SET_WATCHES, summary=summary)


def get_ephemerals(prefix: str) -> Request:
    return _path_request(OpCode.GET_EPHEMERALS, prefix)


def get_all_children_number(path: str) -> Request:
    return _path_request(OpCode.GET_ALL_CHILDREN_NUMBER, path)


def who_am_i() -> Request:
    return Request(OpCode.WHO_AM_I, summary="WHO_AM_I")


def auth(scheme: str, credential: bytes) -> Request:
    body = JuteWriter().int(0).string(scheme).buffer(credential).getvalue()
    return Request(OpCode.AUTH, body, xid=Xid.AUTH, summary=f"AUTH {scheme}")


def close_session() -> Request:
    return Request(OpCode.CLOSE_SESSION, summary="CLOSE_SESSION")


def unknown(op: int) -> Request:
    """An opcode the protocol does not define."""
    return Request(op, summary=f"opcode {op}")


# --- responses -------------------------------------------------------------


def _read_nothing(_: JuteReader) -> None:
    return None


def _read_path_and_stat(r: JuteReader) -> tuple[str | None, Stat]:
    return r.string(), r.stat()


def _read_data_and_stat(r: JuteReader) -> tuple[bytes | None, Stat]:
    return r.buffer(), r.stat()


def _read_children_and_stat(r: JuteReader) -> tuple[list[str] | None, Stat]:
    return r.strings(), r.stat()


def _read_acls_and_stat(r: JuteReader) -> tuple[list[Acl], Stat]:
    return r.acls(), r.stat()


def _read_client_infos(r: JuteReader) -> list[tuple[str | None, str | None]] | None:
    """WhoAmIResponse: a vector of ClientInfo {authScheme, user}."""
    return r.vector(lambda r: (r.string(), r.string()))


@dataclass(frozen=True)
class MultiResult:
    """One entry of a multi reply: the op type the server echoed (-1 for
    an error entry), its error code, and its decoded result."""

    op: int
    err: int
    value: object


def _read_multi(r: JuteReader) -> list[MultiResult]:
    results = []
    while True:
        op, done, err = r.int(), r.bool(), r.int()
        if done:
            return results
        if op == OpCode.ERROR:
            results.append(MultiResult(op, err, r.int()))
        elif op in _MULTI_RESULT_READERS:
            results.append(MultiResult(op, err, _MULTI_RESULT_READERS[op](r)))
        else:
            raise ProtocolError(f"multi result of unknown type {op}")


_MULTI_RESULT_READERS = {
    OpCode.CREATE: lambda r: r.string(),
    OpCode.CREATE2: _read_path_and_stat,
    OpCode.CREATE_CONTAINER: _read_path_and_stat,
    OpCode.CREATE_TTL: _read_path_and_stat,
    OpCode.DELETE: _read_nothing,
    OpCode.SET_DATA: lambda r: r.stat(),
    OpCode.CHECK: _read_nothing,
}

RESPONSE_READERS = {
    OpCode.CREATE: lambda r: r.string(),
    OpCode.CREATE2: _read_path_and_stat,
    OpCode.CREATE_CONTAINER: _read_path_and_stat,
    OpCode.CREATE_TTL: _read_path_and_stat,
    OpCode.DELETE: _read_nothing,
    OpCode.EXISTS: lambda r: r.stat(),
    OpCode.GET_DATA: _read_data_and_stat,
    OpCode.SET_DATA: lambda r: r.stat(),
    OpCode.GET_ACL: _read_acls_and_stat,
    OpCode.SET_ACL: lambda r: r.stat(),
    OpCode.GET_CHILDREN: lambda r: r.strings(),
    OpCode.SYNC: lambda r: r.string(),
    OpCode.PING: _read_nothing,
    OpCode.GET_CHILDREN2: _read_children_and_stat,
    OpCode.CHECK: _read_nothing,
    OpCode.MULTI: _read_multi,
    OpCode.REMOVE_WATCHES: _read_nothing,
    OpCode.AUTH: _read_nothing,
    OpCode.SET_WATCHES: _read_nothing,
    OpCode.GET_EPHEMERALS: lambda r: r.strings(),
    OpCode.GET_ALL_CHILDREN_NUMBER: lambda r: r.int(),
    # addWatch answers with an ErrorResponse {err}, always 0.
    OpCode.ADD_WATCH: lambda r: r.int(),
    OpCode.WHO_AM_I: _read_client_infos,
    OpCode.CLOSE_SESSION: _read_nothing,
}


@dataclass(frozen=True)
class Reply:
    """A reply frame. `body` is decoded by the request's opcode when the
    frame carries one; `trailing` holds any bytes the decoder left over."""

    xid: int
    zxid: int
    err: int
    op: int
    body: object
    trailing: bytes


@dataclass(frozen=True)
class Event:
    """A watch notification (xid -1) and the zxid its header carried."""

    zxid: int
    type: int
    state: int
    path: str | None


@dataclass(frozen=True)
class ConnectResponse:
    protocol_version: int
    timeout_ms: int
    session_id: int
    passwd: bytes
    read_only: bool | None


def _decode_reply(xid: int, zxid: int, err: int, op: int, r: JuteReader) -> Reply:
    reader = RESPONSE_READERS.get(op)
    body = reader(r) if reader and r.remaining() else None
    return Reply(xid, zxid, err, op, body, r.rest())


# --- a connection ----------------------------------------------------------


class Client:
    """One TCP connection carrying one ZooKeeper session.

    Replies must come back in request order; a reply whose xid is not the
    oldest outstanding one is a ProtocolError. Every frame read is appended
    to `frames`, except replies to keepalive pings, which are bookkeeping.
    """

    def __init__(self, sock: socket.socket, response: ConnectResponse) -> None:
        self._sock = sock
        self._buf = b""
        self._next_xid = 1
        # (xid, opcode, recorded) for each request awaiting its reply.
        self._pending: collections.deque[tuple[int, int, bool]] = collections.deque()
        self.connect_response = response
        self.frames: list[Reply | Event] = []
        self.closed_by_server = False
        self.last_sent = time.monotonic()

    @classmethod
    def connect(
        cls,
        address: tuple[str, int],
        timeout_ms: int = 30000,
        session_id: int = 0,
        passwd: bytes = bytes(SESSION_PASSWORD_LEN),
        last_zxid: int = 0,
        io_timeout: float = 5.0,
    ) -> Client:
        """Open a connection and send ConnectRequest (with the trailing
        readOnly=false byte, as current clients do)."""
        sock = socket.create_connection(address, timeout=io_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = (
            JuteWriter()
            .int(0)
            .long(last_zxid)
            .int(timeout_ms)
            .long(session_id)
            .buffer(passwd)
            .bool(False)
        )
        # The response is filled in once read: the framing lives in Client.
        client = cls(sock, ConnectResponse(0, 0, 0, b"", None))
        try:
            client._send_frame(request.getvalue())
            frame = client._read_frame(io_timeout)
            if frame is None:
                raise ProtocolError("connection closed before ConnectResponse")
            r = JuteReader(frame)
            fields = (r.int(), r.int(), r.long(), r.buffer() or b"")
            read_only = r.bool() if r.remaining() else None
            if r.remaining():
                raise ProtocolError(f"{r.remaining()} stray bytes after ConnectResponse")
        except BaseException:
            sock.close()
            raise
        client.connect_response = ConnectResponse(*fields, read_only)
        return client

    def _send_frame(self, payload: bytes) -> None:
        self._sock.sendall(struct.pack(">i", len(payload)) + payload)
        self.last_sent = time.monotonic()

    def _read_frame(self, timeout: float) -> bytes | None:
        """The next frame's payload; None on timeout. EOF sets
        `closed_by_server` and also returns None."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buf) >= 4:
                (length,) = struct.unpack(">i", self._buf[:4])
                if length < 0 or length > MAX_FRAME:
                    raise ProtocolError(f"frame length {length}")
                if len(self._buf) >= 4 + length:
                    frame = self._buf[4 : 4 + length]
                    self._buf = self._buf[4 + length :]
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed_by_server:
                return None
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed_by_server = True
                return None
            self._buf += chunk

    def send(self, request: Request, recorded: bool = True) -> int:
        """Send without waiting; returns the xid used."""
        if request.xid is None:
            xid = self._next_xid
            self._next_xid += 1
        else:
            xid = request.xid
        payload = JuteWriter().int(xid).int(request.op).raw(request.body).getvalue()
        self._pending.append((xid, request.op, recorded))
        self._send_frame(payload)
        return xid

    def read(self, timeout: float) -> Reply | Event | None:
        """Read and record one frame; None on timeout or EOF."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._read_frame(max(0.0, deadline - time.monotonic()))
            if frame is None:
                return None
            r = JuteReader(frame)
            xid, zxid, err = r.int(), r.long(), r.int()
            if xid == Xid.NOTIFICATION:
                event = Event(zxid, r.int(), r.int(), r.string())
                if r.remaining():
                    raise ProtocolError(f"{r.remaining()} stray bytes after WatcherEvent")
                self.frames.append(event)
                return event
            if not self._pending:
                raise ProtocolError(f"reply xid {xid} with no request outstanding")
            expected, op, recorded = self._pending.popleft()
            if xid != expected:
                raise ProtocolError(f"reply xid {xid} out of order, expected {expected}")
            reply = _decode_reply(xid, zxid, err, op, r)
            if recorded:
                self.frames.append(reply)
                return reply

    def call(self, request: Request, timeout: float = 5.0) -> Reply:
        """Send a request and read until its reply, recording any watch
        notifications that arrive before it."""
        xid = self.send(request)
        deadline = time.monotonic() + timeout
        while True:
            frame = self.read(max(0.0, deadline - time.monotonic()))
            if frame is None:
                state = "closed" if self.closed_by_server else "timed out"
                raise ProtocolError(f"connection {state} waiting for reply to xid {xid}")
            if isinstance(frame, Reply) and frame.xid == xid:
                return frame

    def keepalive(self, max_idle: float) -> None:
        """Ping (unrecorded) if nothing was sent for `max_idle` seconds,
        so that a session idle in a long scenario does not expire."""
        if not self.closed_by_server and time.monotonic() - self.last_sent > max_idle:
            # If the server hung up, the next read will tell.
            with contextlib.suppress(OSError):
                self.send(ping(), recorded=False)

    def wait_closed(self, timeout: float) -> bool:
        """Read until the server closes the connection; True if it did."""
        deadline = time.monotonic() + timeout
        while not self.closed_by_server and time.monotonic() < deadline:
            self.read(deadline - time.monotonic())
        return self.closed_by_server

    def close(self) -> None:
        """Drop the socket without closeSession, as a crashed client would."""
        self._sock.close()
