"""Fixtures that start the servers the interop tests talk to.

Two kinds of server speak the ZooKeeper client protocol:

- "zookeeper": Apache ZooKeeper 3.8, the reference whose behaviour the
  coordinator must match, run straight from its jars with a config of ours
  (never a system service or a system config);
- "fjord": our own fjord-coordinator binary.

The Kafka-side tests use `kafka_cluster`: a fjord-coordinator plus any
number of fjord-broker processes pointed at it.

Each server gets its own temporary directory, a free loopback port and a log
file. Every wait has a deadline, and the process is stopped when the test
ends, whether it passed or not. When a test fails, the tail of each server's
log is printed with the failure.

Environment:

- FJORD_INTEROP_SERVERS: comma list of kinds that the `server` fixture runs
  each test against (default "fjord").
- FJORD_BIN_DIR: where fjord-coordinator and fjord-broker live (default
  <repo>/target/debug).
- FJORD_ZK_CLASSPATH: the classpath of ZooKeeper's server (default: the
  Debian package's jars, plus slf4j-simple so that the server logs at all).
- FJORD_INTEROP_KAFKA_COORDINATOR: what `kafka_cluster`'s brokers register
  with, "fjord" (default) or "zookeeper".
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from kazoo.client import KazooClient

REPO_ROOT = Path(__file__).resolve().parents[2]
FJORD_BIN_DIR = Path(os.environ.get("FJORD_BIN_DIR", REPO_ROOT / "target" / "debug"))
ZK_CLASSPATH = os.environ.get(
    "FJORD_ZK_CLASSPATH",
    "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
)
# 200 ms ticks keep session timeouts (clamped to 2..20 ticks) short in tests.
TICK_MS = 200
KINDS = ("zookeeper", "fjord")
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LISTENING_LINE = re.compile(r"^listening on (\S+):(\d+)$", re.MULTILINE)
LISTENER_LINE = re.compile(r"^listener (\S+) on (\S+)$", re.MULTILINE)


def _server_kinds() -> list[str]:
    kinds = [k.strip() for k in os.environ.get("FJORD_INTEROP_SERVERS", "fjord").split(",")]
    kinds = [k for k in kinds if k]
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise pytest.UsageError(
            f"FJORD_INTEROP_SERVERS={kinds!r}: each kind must be one of {KINDS}"
        )
    return kinds


SERVER_KINDS = _server_kinds()


@dataclass
class Server:
    kind: str
    host: str
    port: int
    workdir: Path
    log_path: Path
    process: subprocess.Popen

    @property
    def address(self) -> str:
        """host:port, as clients take it."""
        return f"{self.host}:{self.port}"

    @property
    def sockaddr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def four_letter(self, word: str, timeout: float = 5.0) -> str:
        """Send a four-letter word and return the whole answer."""
        with socket.create_connection(self.sockaddr, timeout=timeout) as sock:
            sock.sendall(word.encode())
            chunks = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(server, ready, what: str, timeout: float = STARTUP_TIMEOUT) -> None:
    """Poll `ready()` until it is true; fail early if the server (a Server or
    a Broker) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.kind} exited with {server.process.returncode} before {what}; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        if ready():
            return
        time.sleep(0.1)
    raise TimeoutError(
        f"{server.kind} not {what} after {timeout}s; "
        f"log {server.log_path}:\n{server.log_tail()}"
    )


def _zookeeper_serving(server: Server) -> bool:
    """ruok answers imok as soon as the port is open, before the server
    takes sessions; srvr tells the two apart."""
    try:
        return server.four_letter("ruok", timeout=1.0) == "imok" and server.four_letter(
            "srvr", timeout=1.0
        ).startswith("Zookeeper version:")
    except OSError:
        return False


def _start_zookeeper(workdir: Path, extra_config=(), jvm_options=(), classpath: str = "") -> Server:
    """ZooKeeper on a free port; `extra_config` lines go into zoo.cfg,
    `jvm_options` (-D...) to its JVM, `classpath` after its own."""
    port = free_port()
    config = workdir / "zoo.cfg"
    config.write_text(
        "\n".join(
            [
                f"tickTime={TICK_MS}",
                f"dataDir={workdir / 'data'}",
                f"clientPort={port}",
                "clientPortAddress=127.0.0.1",
                "admin.enableServer=false",
                "4lw.commands.whitelist=*",
                *extra_config,
                "",
            ]
        )
    )
    log_path = workdir / "server.log"
    command = [
        "java",
        # A small, quick-starting JVM: the tests share two cores with builds.
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        *jvm_options,
        "-cp",
        f"{ZK_CLASSPATH}:{classpath}" if classpath else ZK_CLASSPATH,
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        str(config),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    server = Server("zookeeper", "127.0.0.1", port, workdir, log_path, process)
    try:
        _wait_until(server, lambda: _zookeeper_serving(server), "serving")
    except BaseException:
        server.stop()
        raise
    return server


def _start_fjord(workdir: Path, extra_args=()) -> Server:
    """fjord-coordinator on a free port; `extra_args` are more flags."""
    binary = FJORD_BIN_DIR / "fjord-coordinator"
    if not binary.is_file():
        raise FileNotFoundError(f"{binary} not found: build it, or set FJORD_BIN_DIR")
    stdout_path = workdir / "stdout.txt"
    log_path = workdir / "server.log"
    command = [
        str(binary),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(workdir / "data"),
        "--tick-ms",
        str(TICK_MS),
        *extra_args,
    ]
    # stdout goes to a file too: polling a file needs no reader thread, and
    # nothing can block on a full pipe later.
    with open(stdout_path, "wb") as out, open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=log
        )
    server = Server("fjord", "127.0.0.1", 0, workdir, log_path, process)

    def listening() -> bool:
        match = LISTENING_LINE.search(stdout_path.read_text(errors="replace"))
        if match:
            server.host, server.port = match.group(1), int(match.group(2))
        return match is not None

    try:
        _wait_until(server, listening, "listening")
    except BaseException:
        server.stop()
        raise
    return server


STARTERS = {"zookeeper": _start_zookeeper, "fjord": _start_fjord}


def pytest_configure(config):
    # kafka-python loads its protocol schemas with importlib.resources calls
    # that Python 3.11 deprecates: noise from a dependency, at import time.
    for message in ("read_text is deprecated", "open_text is deprecated"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:DeprecationWarning")


_REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's report so fixtures can tell a failed test."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture
def start_server(request, tmp_path):
    """A factory: start_server(kind) -> a running Server, stopped at the end."""
    started: list[Server] = []

    def start(kind: str) -> Server:
        workdir = tmp_path / f"{kind}-{len(started)}"
        (workdir / "data").mkdir(parents=True)
        server = STARTERS[kind](workdir)
        started.append(server)
        return server

    yield start
    reports = request.node.stash.get(_REPORTS, {})
    failed = any(r.failed for r in reports.values())
    for server in started:
        server.stop()
        if failed:
            print(f"--- {server.kind} log {server.log_path} (tail) ---\n{server.log_tail()}")


@pytest.fixture(params=SERVER_KINDS)
def server(request, start_server) -> Server:
    """One server of each kind in FJORD_INTEROP_SERVERS."""
    return start_server(request.param)


@pytest.fixture
def kazoo_client(server):
    """A factory: kazoo_client(**options) -> a started KazooClient on
    `server`, stopped and closed at the end."""
    clients: list[KazooClient] = []

    def connect(hosts: str | None = None, **options) -> KazooClient:
        client = KazooClient(hosts=hosts or server.address, **options)
        clients.append(client)
        client.start(timeout=STARTUP_TIMEOUT)
        return client

    yield connect
    for client in clients:
        client.stop()
        client.close()


# --- Kafka side: a coordinator plus fjord-broker processes -------------------

# Kind of coordinator the brokers register with: our own, or (to check that
# the brokers work against the real thing) Apache ZooKeeper.
KAFKA_COORDINATOR_KIND = os.environ.get("FJORD_INTEROP_KAFKA_COORDINATOR", "fjord")
if KAFKA_COORDINATOR_KIND not in KINDS:
    raise pytest.UsageError(
        f"FJORD_INTEROP_KAFKA_COORDINATOR={KAFKA_COORDINATOR_KIND!r}: must be one of {KINDS}"
    )
# A killed broker's registration lives until its coordinator session expires,
# and a restarted broker waits for that; a short session keeps restarts quick.
BROKER_SESSION_TIMEOUT_MS = 4000
# Long enough for a restart that waits out the old session.
BROKER_STARTUP_TIMEOUT = 30.0


def _flags(options: dict) -> list[str]:
    """{"num_partitions": 8} -> ["--num-partitions", "8"]."""
    args: list[str] = []
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


@dataclass
class Broker:
    """One fjord-broker process, restartable on the same data dir and port."""

    broker_id: int
    workdir: Path
    coordinator: str
    options: dict
    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen | None = None
    starts: int = 0
    # Stopped with SIGSTOP (pause()) and not yet resumed.
    paused: bool = False
    # Bound listeners by name ("listener NAME on ADDR" lines), when the broker
    # runs with `listeners` ({NAME: PROTOCOL}, first one the `listening on`
    # address); restarts bind the same ports.
    listener_addresses: dict = None

    def listener_address(self, name: str) -> str:
        return self.listener_addresses[name]

    @property
    def kind(self) -> str:
        return f"fjord-broker {self.broker_id}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        """All runs of this broker log here, each after a `=== start` line."""
        return self.workdir / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def reachable(self) -> bool:
        """Running and not paused: it can answer requests."""
        return self.running and not self.paused

    def start(self) -> None:
        """Start (or restart) the broker and wait for `listening on`. The first
        start takes a free port; later ones listen on the same address."""
        if self.running:
            raise RuntimeError(f"{self.kind} is already running")
        binary = FJORD_BIN_DIR / "fjord-broker"
        if not binary.is_file():
            raise FileNotFoundError(f"{binary} not found: build it, or set FJORD_BIN_DIR")
        options = dict(self.options)
        listeners = options.pop("listeners", None)
        if listeners:
            known = self.listener_addresses or {}
            bind = ",".join(f"{n}://{known.get(n, '127.0.0.1:0')}" for n in listeners)
            where = ["--listeners", bind, "--listener-security-protocol-map",
                     ",".join(f"{n}:{p}" for n, p in listeners.items())]
        else:
            where = ["--listen", self.address]
        command = [
            str(binary),
            "--id",
            str(self.broker_id),
            *where,
            "--coordinator",
            self.coordinator,
            "--data-dir",
            str(self.data_dir),
            *_flags(options),
        ]
        stdout_path = self.workdir / f"stdout-{self.starts}.txt"
        self.paused = False
        with open(stdout_path, "wb") as out, open(self.log_path, "ab") as log:
            log.write(f"=== start {self.starts}: {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=log
            )
        self.starts += 1
        wanted_port = self.port

        def listening() -> bool:
            text = stdout_path.read_text(errors="replace")
            match = LISTENING_LINE.search(text)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                if listeners:
                    self.listener_addresses = dict(LISTENER_LINE.findall(text))
            return match is not None

        try:
            _wait_until(self, listening, "listening", timeout=BROKER_STARTUP_TIMEOUT)
        except BaseException:
            self.kill()
            raise
        if wanted_port and self.port != wanted_port:
            self.kill()
            raise RuntimeError(f"{self.kind} restarted on port {self.port}, not {wanted_port}")

    def restart(self) -> None:
        """Start a stopped broker again: same id, data dir and address."""
        self.start()

    def kill(self) -> None:
        """kill -9: no clean shutdown (a paused broker dies too)."""
        if self.running:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process stays, with its sockets and coordinator
        session, but does nothing (a long GC pause or a frozen VM) until
        resume(). Its session expires if that lasts past the timeout."""
        assert self.running, f"{self.kind} is not running"
        self._log_marker("SIGSTOP")
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        assert self.running, f"{self.kind} is not running"
        self.process.send_signal(signal.SIGCONT)
        self.paused = False
        self._log_marker("SIGCONT")

    def _log_marker(self, what: str) -> None:
        """A line in the broker's log, so its lines read against the test's
        actions (the log is opened for appending, as the broker's is)."""
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with open(self.log_path, "ab") as log:
            log.write(f"=== {what} at {now}\n".encode())

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code. A broker that does not exit within
        `timeout` is killed and the test fails."""
        assert self.process is not None
        self.process.terminate()
        if self.paused:  # a stopped process acts on SIGTERM once continued
            self.process.send_signal(signal.SIGCONT)
            self.paused = False
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.kind} did not exit within {timeout}s of SIGTERM")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-lines:])


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        data += chunk
    return data


def kafka_brokers_seen(address: str, timeout: float = 5.0) -> tuple[set[int], int]:
    """Ask one broker, with a plain Metadata v1 request for no topics, which
    broker ids it knows and which broker is the controller."""
    host, port = address.rsplit(":", 1)
    client_id = b"fjord-interop"
    request = struct.pack(">hhih", 3, 1, 1, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    pos = 4  # correlation id
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    ids = set()
    for _ in range(count):
        (node_id, host_len) = struct.unpack_from(">ih", data, pos)
        pos += 6 + host_len + 4  # host, port
        (rack_len,) = struct.unpack_from(">h", data, pos)
        pos += 2 + max(rack_len, 0)
        ids.add(node_id)
    (controller,) = struct.unpack_from(">i", data, pos)
    return ids, controller


@dataclass
class KafkaCluster:
    coordinator: Server
    brokers: list[Broker]
    workdir: Path
    options: dict

    @property
    def bootstrap(self) -> str:
        """Every broker's address, comma-separated, as clients take it."""
        return ",".join(b.address for b in self.brokers)

    def broker(self, broker_id: int) -> Broker:
        return next(b for b in self.brokers if b.broker_id == broker_id)

    @property
    def reachable(self) -> list[Broker]:
        """The brokers that are running and not paused."""
        return [b for b in self.brokers if b.reachable]

    def fjord(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run the `fjord` CLI bootstrapped from a reachable broker;
        returns the finished process (output captured as text)."""
        binary = FJORD_BIN_DIR / "fjord"
        if not binary.is_file():
            raise FileNotFoundError(f"{binary} not found: build it, or set FJORD_BIN_DIR")
        bootstrap = self.reachable[0].address
        return subprocess.run(
            [str(binary), "--bootstrap", bootstrap, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def add_broker(self, **options) -> Broker:
        """Start one more broker (next id, own temp dir) and return it."""
        broker_id = max((b.broker_id for b in self.brokers), default=0) + 1
        workdir = self.workdir / f"broker-{broker_id}"
        workdir.mkdir(parents=True)
        broker = Broker(broker_id, workdir, self.coordinator.address, {**self.options, **options})
        self.brokers.append(broker)
        broker.start()
        return broker

    def wait_for_brokers(self, timeout: float = BROKER_STARTUP_TIMEOUT) -> None:
        """Wait until every running broker reports exactly the running brokers
        and a controller among them (the controller assigns new topics to the
        brokers it knows, so tests that need them all wait for this first).
        Paused brokers are left out: they answer nothing."""
        want = {b.broker_id for b in self.brokers if b.reachable}
        deadline = time.monotonic() + timeout
        seen: dict[int, object] = {}
        while time.monotonic() < deadline:
            for b in self.brokers:
                if b.reachable:
                    try:
                        seen[b.broker_id] = kafka_brokers_seen(b.address)
                    except OSError as e:
                        seen[b.broker_id] = e
            if all(
                isinstance(s, tuple) and s[0] == want and s[1] in want for s in seen.values()
            ):
                return
            time.sleep(0.1)
        raise TimeoutError(f"brokers {sorted(want)} not all seen within {timeout}s: {seen}")


@pytest.fixture
def kafka_cluster(request, tmp_path, start_server):
    """A factory: kafka_cluster(brokers=1, **broker_options) -> a KafkaCluster
    of a coordinator and `brokers` fjord-broker processes, every one in its
    own temp dir on a free loopback port. Options become broker flags
    (num_partitions=8 -> --num-partitions 8). Every broker is killed at the
    end; when the test failed, each broker's log tail is printed."""
    clusters: list[KafkaCluster] = []

    def start(brokers: int = 1, **options) -> KafkaCluster:
        coordinator = start_server(KAFKA_COORDINATOR_KIND)
        options = {"session_timeout_ms": BROKER_SESSION_TIMEOUT_MS, **options}
        cluster = KafkaCluster(coordinator, [], tmp_path / f"kafka-{len(clusters)}", options)
        clusters.append(cluster)
        for _ in range(brokers):
            cluster.add_broker()
        if brokers > 1:
            cluster.wait_for_brokers()
        return cluster

    yield start
    reports = request.node.stash.get(_REPORTS, {})
    failed = any(r.failed for r in reports.values())
    for cluster in clusters:
        for broker in cluster.brokers:
            broker.kill()
            if failed:
                print(f"--- {broker.kind} log {broker.log_path} (tail) ---\n{broker.log_tail()}")
