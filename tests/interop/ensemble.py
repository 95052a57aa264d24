"""A replicated coordinator for the interop tests: a fjord-coordinator
ensemble, and Apache ZooKeeper 3.8 as a 3-server ensemble (the reference
that it must match), run straight from Debian's jars with configs of ours.

Each member listens on a loopback address of its own (127.0.0.2,
127.0.0.3, ...) for clients, quorum and election traffic, so a test can cut
one member off with iptables; `address` is the multi-host connect string
clients take. Members can be killed (kill -9), frozen (SIGSTOP) and
restarted on the same data. Every wait has a deadline.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import FJORD_BIN_DIR, STARTUP_TIMEOUT, STOP_TIMEOUT, ZK_CLASSPATH
from kazoo.client import KazooClient

# What Debian's ZooKeeper ensemble was checked with (PROTOCOL-NOTES): a
# quorum forms in about 2 s and a new leader within 0-2 s of a kill -9.
TICK_MS = 500
# ZooKeeper's AdminServer (Jetty) needs the servlet API beside its own jars.
SERVLET_API = "/usr/share/java/servlet-api.jar"
JVM_FLAGS = ["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dzookeeper.skipACL=yes"]


def free_port(host: str) -> int:
    """A port on `host` that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Member:
    """One server of an ensemble: a ZooKeeper server, or a fjord-coordinator
    member. `quorum_port` is where members talk to each other."""

    sid: int
    host: str
    client_port: int
    quorum_port: int
    election_port: int
    workdir: Path
    process: subprocess.Popen | None = None
    paused: bool = False
    fjord: bool = False
    # Transactions between snapshots; None: the server's default for ZooKeeper, and
    # often (1000) for Fjord, so that tests exercise snapshots and log compaction.
    snapshot_every: int | None = None
    # ZooKeeper's AdminServer port, or Fjord's --http-listen port; None: off.
    http_port: int | None = None

    @property
    def http_address(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def kind(self) -> str:
        return f"{'fjord' if self.fjord else 'zookeeper'} member {self.sid}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def four_letter(self, word: str, timeout: float = 2.0) -> str:
        with socket.create_connection((self.host, self.client_port), timeout=timeout) as sock:
            sock.sendall(word.encode())
            chunks = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")

    def mode(self) -> str | None:
        """"leader", "follower", or None while it serves no clients (no
        quorum, or down)."""
        if not self.running or self.paused:
            return None
        try:
            for line in self.four_letter("srvr").splitlines():
                if line.startswith("Mode: "):
                    return line.split(": ", 1)[1].strip()
        except OSError:
            pass
        return None

    def start(self, servers: str) -> None:
        if self.fjord:
            self._start_fjord(servers)
            return
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{self.sid}\n")
        # Each ZooKeeper server runs as a user of its own: its outgoing quorum
        # connections are not bound to its address, so the firewall tells its
        # traffic apart by owner (see Firewall).
        for root, dirs, files in os.walk(self.workdir):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), self.uid, self.uid)
        os.chown(self.workdir, self.uid, self.uid)
        # ... and must be able to get there (pytest's temp dirs are private).
        for parent in self.workdir.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        config = self.workdir / "zoo.cfg"
        config.write_text(
            "\n".join(
                [
                    f"tickTime={TICK_MS}",
                    "initLimit=10",
                    "syncLimit=5",
                    f"dataDir={data}",
                    f"clientPort={self.client_port}",
                    f"clientPortAddress={self.host}",
                    *(
                        ["admin.enableServer=true", f"admin.serverAddress={self.host}",
                         f"admin.serverPort={self.http_port}"]
                        if self.http_port else ["admin.enableServer=false"]
                    ),
                    "4lw.commands.whitelist=*",
                    # Membership changes through reconfig (its ACL check is skipped with
                    # -Dzookeeper.skipACL below).
                    "reconfigEnabled=true",
                    "standaloneEnabled=false",
                    *([f"snapCount={self.snapshot_every}"] if self.snapshot_every else []),
                    servers,
                    "",
                ]
            )
        )
        with open(self.log_path, "ab") as log:
            log.write(f"=== start at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    "setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                    "java", *JVM_FLAGS, "-cp",
                    f"{ZK_CLASSPATH}:{SERVLET_API}" if self.http_port else ZK_CLASSPATH,
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(config),
                ],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, "HOME": str(self.workdir)},
            )
        self.paused = False

    @property
    def uid(self) -> int:
        return 20_000 + self.sid

    def _start_fjord(self, peers: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"=== start at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    str(FJORD_BIN_DIR / "fjord-coordinator"),
                    "--id", str(self.sid),
                    "--listen", self.address,
                    "--peer-listen", f"{self.host}:{self.quorum_port}",
                    "--peers", peers,
                    "--data-dir", str(self.workdir / "data"),
                    "--tick-ms", str(TICK_MS),
                    "--snapshot-txns", str(self.snapshot_every or 1000),
                    *(["--http-listen", self.http_address] if self.http_port else []),
                ],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        self.paused = False

    def kill(self) -> None:
        if self.running:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        self.paused = False

    def pause(self) -> None:
        assert self.running, f"{self.kind} is not running"
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.running, f"{self.kind} is not running"
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log file)"


class ZooKeeperEnsemble:
    """`size` ZooKeeper servers on 127.0.0.2, 127.0.0.3, ..., each in
    WORKDIR/member-N."""

    kind = "zookeeper"
    fjord = False

    def __init__(self, workdir: Path, size: int = 3, snapshot_every: int | None = None,
                 admin: bool = False):
        self.members: dict[int, Member] = {}
        for sid in range(1, size + 1):
            host = f"127.0.0.{1 + sid}"
            self.members[sid] = Member(
                sid, host, free_port(host), free_port(host), free_port(host), workdir / f"member-{sid}",
                fjord=self.fjord, snapshot_every=snapshot_every,
                http_port=free_port(host) if admin else None,
            )
        self.servers = self.server_list()

    def server_list(self) -> str:
        return "\n".join(f"server.{m.sid}={self.spec(m)}" for m in self.members.values())

    @staticmethod
    def spec(m: Member) -> str:
        """A member as reconfig and the config name it."""
        return f"{m.host}:{m.quorum_port}:{m.election_port}:participant;{m.host}:{m.client_port}"

    def add_member(self, workdir: Path) -> tuple[int, str]:
        """Starts one more member (not yet voting) and returns its id and the
        `server.ID=...` string that reconfig takes to add it."""
        sid = max(self.members) + 1
        host = f"127.0.0.{1 + sid}"
        m = Member(sid, host, free_port(host), free_port(host), free_port(host), workdir / f"member-{sid}",
                   fjord=self.fjord, snapshot_every=next(iter(self.members.values())).snapshot_every)
        self.members[sid] = m
        m.start(self.server_list())
        return sid, f"server.{sid}={self.spec(m)}"

    def forget(self, sid: int) -> None:
        """Stops a member that was removed from the ensemble."""
        m = self.members.pop(sid)
        m.kill()

    @property
    def address(self) -> str:
        """The connect string: every member, comma-separated."""
        return ",".join(m.address for m in self.members.values())

    def start(self) -> None:
        for m in self.members.values():
            m.start(self.servers)
        self.wait_for_quorum()

    def restart(self, sid: int) -> None:
        self.members[sid].start(self.servers)

    def modes(self) -> dict[int, str | None]:
        return {sid: m.mode() for sid, m in self.members.items()}

    def leader(self) -> int | None:
        leaders = [sid for sid, mode in self.modes().items() if mode == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def wait_for_quorum(self, timeout: float = STARTUP_TIMEOUT, without: set[int] = frozenset()) -> int:
        """Wait until one running member leads and every other running,
        unpaused member (but those in `without`) follows; returns the
        leader's id."""
        deadline = time.monotonic() + timeout
        modes: dict[int, str | None] = {}
        while time.monotonic() < deadline:
            for m in self.members.values():
                if m.process is not None and not m.running and m.process.returncode != -signal.SIGKILL:
                    raise RuntimeError(f"{m.kind} exited with {m.process.returncode}:\n{m.log_tail()}")
            modes = self.modes()
            up = {
                sid: mode
                for sid, mode in modes.items()
                if self.members[sid].running and not self.members[sid].paused and sid not in without
            }
            if list(up.values()).count("leader") == 1 and all(v in ("leader", "follower") for v in up.values()):
                return next(sid for sid, v in up.items() if v == "leader")
            time.sleep(0.2)
        raise TimeoutError(f"no quorum within {timeout}s: {modes}")

    def stop(self) -> None:
        for m in self.members.values():
            if m.paused:
                m.resume()
            if m.running:
                m.process.terminate()
        for m in self.members.values():
            if m.process is not None:
                try:
                    m.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    m.process.kill()
                    m.process.wait(STOP_TIMEOUT)


class FjordEnsemble(ZooKeeperEnsemble):
    """`size` fjord-coordinator members on 127.0.0.2, 127.0.0.3, ..., each in
    WORKDIR/member-N, with the same interface as ZooKeeperEnsemble."""

    kind = "fjord"
    fjord = True

    def server_list(self) -> str:
        return ",".join(f"{m.sid}={m.host}:{m.quorum_port}" for m in self.members.values())

    @staticmethod
    def spec(m: Member) -> str:
        return f"{m.host}:{m.quorum_port}"


ENSEMBLES = {"zookeeper": ZooKeeperEnsemble, "fjord": FjordEnsemble}


class Firewall:
    """Cuts members off from each other with iptables, in a chain of its own
    that `close` removes. Fjord members bind their outgoing peer connections
    to their own address, so address rules do; ZooKeeper's do not (they
    leave from 127.0.0.1), so for it the rules match the sending process's
    user, one per member. Clients (on 127.0.0.1) can still reach every
    member."""

    CHAIN = "FJORD_TEST"

    def __init__(self, ensemble: ZooKeeperEnsemble):
        self.ensemble = ensemble
        self._iptables("-N", self.CHAIN, check=False)
        self._iptables("-F", self.CHAIN)
        # Loopback traffic passes OUTPUT first, the only hook where the owner
        # of a packet is known.
        if self._iptables("-C", "OUTPUT", "-j", self.CHAIN, check=False) != 0:
            self._iptables("-I", "OUTPUT", "-j", self.CHAIN)

    @staticmethod
    def _iptables(*args: str, check: bool = True) -> int:
        r = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(args)}: {r.stderr.strip()}")
        return r.returncode

    def cut(self, sid: int) -> None:
        """Member `sid` can no longer reach the other members, nor they it."""
        me = self.ensemble.members[sid]
        for other in self.ensemble.members.values():
            if other.sid == sid:
                continue
            if self.ensemble.fjord:
                self._iptables("-A", self.CHAIN, "-s", me.host, "-d", other.host, "-j", "DROP")
                self._iptables("-A", self.CHAIN, "-s", other.host, "-d", me.host, "-j", "DROP")
            else:
                self._iptables("-A", self.CHAIN, "-m", "owner", "--uid-owner", str(me.uid), "-d", other.host, "-j", "DROP")
                self._iptables("-A", self.CHAIN, "-m", "owner", "--uid-owner", str(other.uid), "-d", me.host, "-j", "DROP")

    def heal(self) -> None:
        self._iptables("-F", self.CHAIN)

    def close(self) -> None:
        self.heal()
        while self._iptables("-D", "OUTPUT", "-j", self.CHAIN, check=False) == 0:
            pass
        self._iptables("-X", self.CHAIN, check=False)


def tree_digest(address: str) -> tuple[str, int]:
    """A digest of one member's whole tree (outside /zookeeper), read after a
    sync so that the member has caught up with the leader, and the number
    of nodes in it. Every field in it is replicated, so members that agree
    have equal digests."""
    zk = KazooClient(hosts=address, timeout=10)
    zk.start(timeout=STARTUP_TIMEOUT)
    digest = hashlib.sha256()
    count = 0
    try:
        zk.sync("/")
        pending = sorted(f"/{c}" for c in zk.get_children("/") if c != "zookeeper")
        while pending and count < 100_000:
            path = pending.pop()
            data, stat = zk.get(path)
            digest.update(repr((path, data, stat.version, stat.czxid, stat.mzxid, stat.cversion)).encode())
            count += 1
            pending.extend(sorted(f"{path}/{c}" for c in zk.get_children(path)))
    finally:
        zk.stop()
        zk.close()
    return digest.hexdigest(), count
