"""Fixtures that start the servers the interop tests talk to.

Two kinds of server speak the ZooKeeper client protocol:

- "zookeeper": Apache ZooKeeper 3.8, the reference whose behaviour the
  coordinator must match, run straight from its jars with a config of ours
  (never a system service or a system config);
- "fjord": our own fjord-coordinator binary.

Each server gets its own temporary directory, a free loopback port and a log
file. Every wait has a deadline, and the process is stopped when the test
ends, whether it passed or not. When a test fails, the tail of each server's
log is printed with the failure.

Environment:

- FJORD_INTEROP_SERVERS: comma list of kinds that the `server` fixture runs
  each test against (default "fjord").
- FJORD_BIN_DIR: where fjord-coordinator lives (default <repo>/target/debug).
- FJORD_ZK_CLASSPATH: the classpath of ZooKeeper's server (default: the
  Debian package's jars, plus slf4j-simple so that the server logs at all).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
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


def _wait_until(server: Server, ready, what: str) -> None:
    """Poll `ready()` until it is true; fail early if the server exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
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
        f"{server.kind} not {what} after {STARTUP_TIMEOUT}s; "
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


def _start_zookeeper(workdir: Path) -> Server:
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
        "-cp",
        ZK_CLASSPATH,
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


def _start_fjord(workdir: Path) -> Server:
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
