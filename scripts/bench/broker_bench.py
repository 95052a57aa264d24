"""Driver of the broker benchmarks `scripts/bench/replication` and `scripts/bench/failover`.

The bash entry points parse the options, build, find a Python with confluent-kafka and
make the work directory; this file starts the servers, runs the clients and prints the
table. See scripts/bench/README.md.

Every server is a child of this process, with its own data directory, stdout file and log
file under the work directory, on loopback only. Its pid is also written to WORK/pids so
that the entry point can remove anything left behind. Every wait has a deadline and every
loop a bound.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka
from confluent_kafka import Producer

LISTENING_LINE = re.compile(r"^listening on (\S+):(\d+)$", re.MULTILINE)
LISTENER_LINE = re.compile(r"^listener (\S+) on (\S+)$", re.MULTILINE)
STARTUP_TIMEOUT = 30.0
# A restarted broker may wait for its previous coordinator session to expire first.
RESTART_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 60.0

# Broker flags whose defaults the benchmarks print, when the broker has them.
BROKER_FLAGS = [
    "session-timeout-ms",
    "replica-lag-time-max-ms",
    "replica-fetch-wait-max-ms",
    "min-insync-replicas",
    "auto-leader-rebalance",
    "leader-imbalance-check-interval-ms",
    "controlled-shutdown",
    "fsync",
]
COORDINATOR_FLAGS = ["tick-ms"]


def log(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A failure that ends the benchmark with a one-line reason."""


class Terminated(BaseException):
    """SIGTERM: unwind and clean up, like KeyboardInterrupt for SIGINT."""


def _on_sigterm(_signo, _frame):
    raise Terminated()


# --- servers -----------------------------------------------------------------------


@dataclass
class Process:
    """One server process: restartable on the same data directory and address."""

    name: str
    command_base: list[str]  # without --listen
    workdir: Path
    pids_file: Path
    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen | None = None
    starts: int = 0
    # Named listeners ({NAME: PROTOCOL}) instead of --listen; the first one is `address`,
    # every one's bound address is in `listener_addresses` (kept across restarts).
    listeners: dict | None = None
    listener_addresses: dict = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """stderr of every start of this server, each after a `=== start` line."""
        return self.workdir / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Starts the server and waits for its `listening on` line. The first start
        takes a free port (port 0); later ones listen on the same address."""
        if self.running:
            raise BenchError(f"{self.name} is already running")
        if self.listeners:
            bind = ",".join(
                f"{n}://{self.listener_addresses.get(n, '127.0.0.1:0')}" for n in self.listeners
            )
            protocols = ",".join(f"{n}:{p}" for n, p in self.listeners.items())
            where = ["--listeners", bind, "--listener-security-protocol-map", protocols]
        else:
            where = ["--listen", f"{self.host}:{self.port}"]
        command = [*self.command_base, *where]
        stdout_path = self.workdir / f"stdout-{self.starts}.txt"
        with open(stdout_path, "wb") as out, open(self.log_path, "ab") as err:
            err.write(f"=== start {self.starts}: {' '.join(command)}\n".encode())
            err.flush()
            self.process = subprocess.Popen(
                command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        with open(self.pids_file, "a") as f:
            f.write(f"{self.process.pid} {command[0]}\n")
        self.starts += 1
        wanted = self.port
        deadline = time.monotonic() + timeout
        while True:
            text = stdout_path.read_text(errors="replace")
            match = LISTENING_LINE.search(text)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                self.listener_addresses.update(LISTENER_LINE.findall(text))
                break
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.process.returncode} before listening; "
                    f"log {self.log_path}: {self.log_tail(5)}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise BenchError(f"{self.name} did not print 'listening on' within {timeout:.0f} s")
            time.sleep(0.05)
        if wanted and self.port != wanted:
            self.kill()
            raise BenchError(f"{self.name} restarted on port {self.port}, not {wanted}")

    def kill(self) -> None:
        """SIGKILL (kill -9), then reap."""
        if self.running:
            self.process.kill()
        if self.process is not None:
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT. Returns the exit code of a clean
        stop, None if it had to be killed or was not running."""
        if not self.running:
            return None
        self.process.terminate()
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return " | ".join(text.splitlines()[-lines:])


class Cluster:
    """A fjord-coordinator and N fjord-broker processes, each in WORKDIR/<name>."""

    def __init__(self, prog: str, bin_dir: Path, workdir: Path, pids_file: Path, brokers: int,
                 broker_args: list[str] | None = None, listeners: dict | None = None):
        self.prog = prog
        self.bin_dir = bin_dir
        self.workdir = workdir
        workdir.mkdir(parents=True)
        cdir = workdir / "coordinator"
        cdir.mkdir()
        self.coordinator = Process(
            "fjord-coordinator",
            [str(bin_dir / "fjord-coordinator"), "--data-dir", str(cdir / "data")],
            cdir,
            pids_file,
        )
        self.brokers: dict[int, Process] = {}
        self._broker_count = brokers
        self._pids_file = pids_file
        self._broker_args = broker_args or []
        self._listeners = listeners

    def start(self) -> None:
        self.coordinator.start()
        for broker_id in range(1, self._broker_count + 1):
            bdir = self.workdir / f"broker-{broker_id}"
            bdir.mkdir()
            self.brokers[broker_id] = Process(
                f"fjord-broker {broker_id}",
                [
                    str(self.bin_dir / "fjord-broker"),
                    "--id",
                    str(broker_id),
                    "--coordinator",
                    self.coordinator.address,
                    "--data-dir",
                    str(bdir / "data"),
                    *self._broker_args,
                ],
                bdir,
                self._pids_file,
                listeners=self._listeners,
            )
        for broker in self.brokers.values():
            broker.start()
        self.wait_for_brokers()

    @property
    def bootstrap(self) -> str:
        return ",".join(b.address for b in self.brokers.values())

    def live(self) -> dict[int, Process]:
        return {i: b for i, b in self.brokers.items() if b.running}

    def any_address(self) -> str:
        live = self.live()
        if not live:
            raise BenchError("no broker is running")
        return next(iter(live.values())).address

    def check_alive(self, what: str) -> None:
        """Fails if a server that should run has died (with the tail of its log)."""
        for p in [self.coordinator, *self.brokers.values()]:
            if p.process is not None and p.process.poll() is not None and p.process.returncode != -signal.SIGKILL:
                raise BenchError(
                    f"{p.name} exited with {p.process.returncode} {what}; log {p.log_path}: {p.log_tail(5)}"
                )

    def metadata_all(self, topics: list[str] | None, timeout: float = 1.0) -> dict[int, "Metadata | Exception"]:
        """Metadata from every running broker, asked directly."""
        seen: dict[int, Metadata | Exception] = {}
        for broker_id, b in self.live().items():
            try:
                seen[broker_id] = fetch_metadata(b.address, topics, timeout)
            except (OSError, ValueError, struct.error) as e:
                seen[broker_id] = e
        return seen

    def wait_until(self, what: str, check, timeout: float, interval: float = 0.1):
        """Polls check(), which returns (done, value), until done; returns the value.
        Raises with the last value seen (the details) when `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive(f"while waiting for {what}")
            done, value = check()
            if done:
                return value
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {value}")
            time.sleep(interval)

    def wait_for_brokers(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Every running broker reports exactly the running brokers and a controller
        among them."""
        want = set(self.live())

        def check():
            seen = self.metadata_all([])
            ok = all(
                isinstance(m, Metadata) and set(m.brokers) == want and m.controller in want
                for m in seen.values()
            )
            return ok, {
                i: (m if isinstance(m, Exception) else f"brokers {sorted(m.brokers)}, controller {m.controller}")
                for i, m in seen.items()
            }

        self.wait_until(f"brokers {sorted(want)} to see each other", check, timeout)

    def wait_for_partitions(self, topic: str, partitions: int, replicas: int, timeout: float,
                            preferred_leader: bool = False) -> "TopicMetadata":
        """Every running broker reports every partition of `topic` with a leader, all
        `replicas` replicas in the ISR (and, with `preferred_leader`, the first replica
        leading); returns the agreed state."""

        def check():
            seen = self.metadata_all([topic])
            states = []
            for broker_id, m in seen.items():
                if isinstance(m, Exception):
                    return False, {broker_id: repr(m)}
                t = m.topics.get(topic)
                if t is None or t.error or len(t.partitions) != partitions:
                    return False, {broker_id: t}
                for p in t.partitions.values():
                    if p.leader < 0 or len(p.replicas) != replicas or set(p.isr) != set(p.replicas):
                        return False, {broker_id: t}
                    if preferred_leader and p.leader != p.replicas[0]:
                        return False, {broker_id: t}
                states.append(t)
            if not states or any(s.leaders() != states[0].leaders() for s in states):
                return False, {i: (m.topics.get(topic) if isinstance(m, Metadata) else m) for i, m in seen.items()}
            return True, states[0]

        return self.wait_until(f"topic {topic} to be fully replicated", check, timeout)

    def fjord(self, *args: str, timeout: float = CLI_TIMEOUT) -> str:
        """Runs the fjord CLI against a running broker; fails with its output if it fails."""
        command = [str(self.bin_dir / "fjord"), "--bootstrap", self.any_address(), *args]
        try:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"`{' '.join(command[1:])}` did not finish within {timeout:.0f} s") from None
        if done.returncode != 0:
            output = (done.stderr.strip() or done.stdout.strip()).replace("\n", " | ")
            raise BenchError(f"`fjord {' '.join(args)}` exited with {done.returncode}: {output}")
        return done.stdout

    def stop(self) -> list[str]:
        """Stops every server (brokers first); returns complaints about unclean stops."""
        problems = []
        for p in [*self.brokers.values(), self.coordinator]:
            if p.running:
                rc = p.stop()
                if rc != 0:
                    problems.append(f"{p.name} (pid {p.pid}) did not exit 0 on SIGTERM: {rc}")
        return problems

    def remove_data(self) -> None:
        """Removes the servers' data directories (the logs stay)."""
        for p in [*self.brokers.values(), self.coordinator]:
            shutil.rmtree(p.workdir / "data", ignore_errors=True)

    def kill_all(self) -> None:
        for p in [*self.brokers.values(), self.coordinator]:
            p.kill()


# --- a minimal Metadata v1 client, to ask one particular broker ------------------------


@dataclass
class Partition:
    error: int
    leader: int
    replicas: list[int]
    isr: list[int]


@dataclass
class TopicMetadata:
    error: int
    partitions: dict[int, Partition] = field(default_factory=dict)

    def leaders(self) -> dict[int, int]:
        return {i: p.leader for i, p in sorted(self.partitions.items())}

    def __repr__(self) -> str:
        parts = ", ".join(
            f"p{i}: leader {p.leader} replicas {p.replicas} isr {p.isr}"
            for i, p in sorted(self.partitions.items())
        )
        return f"(error {self.error}; {parts})"


@dataclass
class Metadata:
    brokers: dict[int, tuple[str, int]]
    controller: int
    topics: dict[str, TopicMetadata]


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        data += chunk
    return data


def fetch_metadata(address: str, topics: list[str] | None, timeout: float = 1.0) -> Metadata:
    """A Metadata v1 request to one broker: `topics` None asks for all topics, [] for none."""
    host, port = address.rsplit(":", 1)
    client_id = b"fjord-bench"
    body = b""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics))
        for t in topics:
            raw = t.encode()
            body += struct.pack(">h", len(raw)) + raw
    request = struct.pack(">hhih", 3, 1, 1, len(client_id)) + client_id + body
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    pos = 4  # correlation id

    def i16():
        nonlocal pos
        (v,) = struct.unpack_from(">h", data, pos)
        pos += 2
        return v

    def i32():
        nonlocal pos
        (v,) = struct.unpack_from(">i", data, pos)
        pos += 4
        return v

    def string():
        nonlocal pos
        n = i16()
        if n < 0:
            return None
        v = data[pos : pos + n].decode(errors="replace")
        pos += n
        return v

    def int_array():
        return [i32() for _ in range(max(i32(), 0))]

    brokers = {}
    for _ in range(i32()):
        node = i32()
        bhost = string()
        bport = i32()
        string()  # rack
        brokers[node] = (bhost, bport)
    controller = i32()
    result: dict[str, TopicMetadata] = {}
    for _ in range(i32()):
        error = i16()
        name = string()
        pos += 1  # is_internal
        t = TopicMetadata(error)
        for _ in range(i32()):
            perror = i16()
            index = i32()
            leader = i32()
            replicas = int_array()
            isr = int_array()
            t.partitions[index] = Partition(perror, leader, replicas, isr)
        result[name] = t
    return Metadata(brokers, controller, result)


# --- header helpers ------------------------------------------------------------------


def flag_defaults(binary: Path, flags: list[str]) -> list[str]:
    """`--flag VALUE` for each flag, with the default that `binary --help` shows."""
    try:
        text = subprocess.run(
            [str(binary), "--help"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    # Help entries start with the flag; the default follows somewhere in its text.
    entries = re.split(r"\n(?=\s*(?:-\w, )?--[a-z])", text)
    out = []
    for flag in flags:
        entry = next((e for e in entries if re.match(rf"\s*(?:-\w, )?--{flag}(?=[\s=<,])", e)), None)
        if entry is None:
            out.append(f"--{flag} (no such flag)")
            continue
        m = re.search(r"\[default: ([^\]]*)\]", entry)
        out.append(f"--{flag} {m.group(1) if m else '(no default shown)'}")
    return out


def machine_lines(workdir: Path, load_before: str) -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1048576:.1f} GiB RAM"
    except OSError:
        pass
    df = subprocess.run(["df", "-PT", str(workdir)], capture_output=True, text=True).stdout.splitlines()
    disk = "unknown"
    if len(df) > 1:
        cols = df[1].split()
        disk = f"{cols[0]} ({cols[1]})"
    return [
        f"machine:   {os.cpu_count()} CPUs, {cpu}{mem}, {platform.system()} {platform.release()}, "
        f"load before start {load_before}",
        f"disk:      {disk}, every server's data directory on it",
    ]


def commit_line(root: Path) -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip() or "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return commit + (" (with local changes)" if dirty else "")


def client_logger(path: Path, name: str) -> logging.Logger:
    """librdkafka's log lines (connection refused to a dead broker, ...) go to a file."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    return logger


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (fields 14 and 15 of /proc/PID/stat)."""
    try:
        text = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    """A size from /proc/PID/status (VmRSS, VmHWM) in KiB; 0 if the process is gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if value == float("inf"):
        return "timeout"
    return f"{value:.{digits}f}"


def run_main(main, log) -> None:
    """Exits with `main()`'s code; a BenchError is logged as the reason and exits 1."""
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)


def print_rows(header: list[str], rows: list[list], left: int = 1) -> None:
    """Prints a table: the first `left` columns left-aligned, the rest right-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def parse_producer_config(items: list[str]) -> dict[str, str]:
    config = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--producer-config {item!r}: expected KEY=VALUE")
        config[key] = value
    return config


# --- replication ----------------------------------------------------------------------


@dataclass
class PhaseResult:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    client_cpu: float = 0.0  # this process (Python and librdkafka threads), seconds
    brokers_cpu: float = 0.0  # the three brokers together, seconds

    @property
    def msgs_per_sec(self) -> float | None:
        return self.delivered / self.elapsed if self.elapsed > 0 else None


def produce_phase(producer: Producer, topic: str, payload: bytes, secs: float, messages: int,
                  outstanding: int, hard_limit: float, flush_timeout: float) -> PhaseResult:
    """Produces `payload` to `topic` as fast as the client goes, at most `outstanding`
    messages unacknowledged, for `secs` seconds or `messages` messages (0: no such bound),
    then waits for every delivery report. Latency: produce() call to delivery report."""
    result = PhaseResult()
    perf = time.perf_counter
    latencies = result.latencies

    def on_delivery(sent_at, err, _msg):
        if err is None:
            result.delivered += 1
            latencies.append(perf() - sent_at)
        else:
            result.failed += 1
            name = err.name()
            result.errors[name] = result.errors.get(name, 0) + 1

    start = perf()
    end = start + (secs if secs > 0 else hard_limit)
    while True:
        now = perf()
        if now >= end or (messages and result.sent >= messages):
            break
        if result.sent - result.delivered - result.failed >= outstanding:
            producer.poll(0.001)
            continue
        try:
            producer.produce(topic, payload, on_delivery=functools.partial(on_delivery, perf()))
            result.sent += 1
        except BufferError:
            producer.poll(0.001)
            continue
        if result.sent % 64 == 0:
            producer.poll(0)
    deadline = perf() + flush_timeout
    while result.delivered + result.failed < result.sent and perf() < deadline:
        producer.poll(0.05)
    result.elapsed = perf() - start
    missing = result.sent - result.delivered - result.failed
    if missing:
        raise BenchError(f"{missing} messages to {topic} were not acknowledged within {flush_timeout:.0f} s")
    return result


def kafka_load(binary: Path, log_path: Path, args: list[str], timeout: float) -> dict:
    """Runs kafka-load (`scripts/bench/kafka-load`) with `args`, its stderr appended to
    `log_path`, and returns the JSON summary it prints last; a failure or a run longer than
    `timeout` seconds is a BenchError."""
    cmd = [str(binary), *args]
    with open(log_path, "a") as err:
        err.write(f"$ {' '.join(cmd)}\n")
        err.flush()
        try:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"kafka-load {args[0]} did not finish within {timeout:.0f} s") from e
    if out.returncode != 0:
        raise BenchError(f"kafka-load {args[0]} failed (exit {out.returncode}); see {log_path}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def native_phase(load: Path, log_path: Path, bootstrap: str, topic: str, messages: int,
                 size: int, config: dict[str, str], brokers: list[int],
                 timeout: float) -> PhaseResult:
    """Produces `messages` records with kafka-load (librdkafka in a native program, one
    producer, every partition) and reads its JSON summary; the client's CPU is the child's."""
    args = ["produce", "--bootstrap", bootstrap, "--topic", topic, "--partition", "-1",
            "--messages", str(messages), "--size", str(size), "--timeout", str(timeout)]
    for k, v in config.items():
        args += ["-X", f"{k}={v}"]
    brokers_before = sum(cpu_seconds(b) for b in brokers)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = kafka_load(load, log_path, args, timeout + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = PhaseResult(sent=messages, delivered=int(summary["messages"]), elapsed=float(summary["secs"]))
    result.client_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    result.brokers_cpu = sum(cpu_seconds(b) for b in brokers) - brokers_before
    return result


def warm_memory(prog: str, gib: float) -> None:
    """Writes and frees `gib` GiB of shared memory, so that pages the benchmark's page cache
    later uses have been touched once: on a virtual machine the first touch of a guest page
    faults in the hypervisor and copies into it run several times slower (see README)."""
    if gib <= 0:
        return
    path = Path("/dev/shm") / f"fjord-bench-warm-{os.getpid()}"
    chunk = b"\x01" * (1 << 20)
    started = time.monotonic()
    try:
        with open(path, "wb") as f:
            for _ in range(int(gib * 1024)):
                f.write(chunk)
    except OSError as e:
        log(prog, f"warning: could not warm memory through {path}: {e}")
    finally:
        path.unlink(missing_ok=True)
    log(prog, f"touched {gib:g} GiB of memory in {time.monotonic() - started:.1f} s")


def run_replication(args) -> int:
    prog = "replication-bench"
    root = Path(args.root)
    bin_dir = Path(args.bin_dir)
    work = Path(args.work)
    pids = work / "pids"
    extra = parse_producer_config(args.producer_config)
    if args.replicas < 1 or args.replicas > 3:
        raise BenchError("--replicas must be between 1 and 3 (the cluster has 3 brokers)")
    if args.min_insync > args.replicas:
        raise BenchError("--min-insync must not exceed --replicas")
    rf1 = "rf1"
    rfn = f"rf{args.replicas}" if args.replicas != 1 else "rf1-copy"
    payload = os.urandom(args.size)
    producer_config = {
        "acks": "all",
        **extra,
    }
    shown_config = ", ".join(f"{k}={v}" for k, v in producer_config.items())
    results: dict[str, list[PhaseResult]] = {rf1: [], rfn: []}
    layouts: dict[str, str] = {}
    native = args.client == "native"
    if native and not args.load:
        raise BenchError("--client native needs --load (the kafka-load binary)")
    native_messages = args.messages or 1_000_000
    warm_memory(prog, args.warm_memory)

    for round_no in range(1, args.rounds + 1):
        cluster = Cluster(prog, bin_dir, work / f"round-{round_no}", pids, 3)
        try:
            cluster.start()
            log(prog, f"round {round_no}/{args.rounds}: coordinator {cluster.coordinator.address}, "
                      f"brokers {cluster.bootstrap}")
            cluster.fjord("topics", "create", rf1, "--partitions", str(args.partitions),
                          "--replication-factor", "1")
            cluster.fjord("topics", "create", rfn, "--partitions", str(args.partitions),
                          "--replication-factor", str(args.replicas),
                          "--config", f"min.insync.replicas={args.min_insync}")
            for topic, rf in [(rf1, 1), (rfn, args.replicas)]:
                state = cluster.wait_for_partitions(topic, args.partitions, rf, STARTUP_TIMEOUT)
                layouts[topic] = repr(state)
                log(prog, f"round {round_no}/{args.rounds}: {topic} {state!r}")
            order = [rf1, rfn] if round_no % 2 == 1 else [rfn, rf1]
            for topic in order:
                if native:
                    brokers = [b.pid for b in cluster.brokers.values()]
                    client_log = work / "client.log"
                    if args.warmup > 0:
                        native_phase(Path(args.load), client_log, cluster.bootstrap, topic,
                                     max(1, native_messages // 10), args.size, producer_config,
                                     brokers, args.max_secs)
                    result = native_phase(Path(args.load), client_log, cluster.bootstrap, topic,
                                          native_messages, args.size, producer_config, brokers,
                                          args.max_secs)
                    cluster.check_alive(f"during the {topic} phase")
                    results[topic].append(result)
                    log(prog, f"round {round_no}/{args.rounds}: {topic}: {result.delivered} msgs in "
                              f"{result.elapsed:.2f} s, {fmt(result.msgs_per_sec)} msgs/s")
                    continue
                producer = Producer({
                    "bootstrap.servers": cluster.bootstrap,
                    "logger": client_logger(work / "client.log", f"producer-{round_no}-{topic}"),
                    **producer_config,
                })
                try:
                    if args.warmup > 0:
                        produce_phase(producer, topic, payload, args.warmup, 0, args.outstanding,
                                      args.warmup, args.flush_timeout)
                    brokers_before = sum(cpu_seconds(b.pid) for b in cluster.brokers.values())
                    client_before = own_cpu_seconds()
                    result = produce_phase(producer, topic, payload, args.secs, args.messages,
                                           args.outstanding, args.max_secs, args.flush_timeout)
                    result.client_cpu = own_cpu_seconds() - client_before
                    result.brokers_cpu = (
                        sum(cpu_seconds(b.pid) for b in cluster.brokers.values()) - brokers_before
                    )
                finally:
                    producer.purge()
                    producer.flush(5)
                cluster.check_alive(f"during the {topic} phase")
                results[topic].append(result)
                lat = sorted(result.latencies)
                log(prog, f"round {round_no}/{args.rounds}: {topic}: {result.delivered} msgs in "
                          f"{result.elapsed:.2f} s, {fmt(result.msgs_per_sec)} msgs/s, "
                          f"p50 {fmt(1000 * percentile(lat, 50), 2)} ms, "
                          f"p99 {fmt(1000 * percentile(lat, 99), 2)} ms, {result.failed} failed")
            for problem in cluster.stop():
                log(prog, f"warning: {problem}")
        finally:
            cluster.kill_all()
            cluster.remove_data()

    # --- the table ---
    def med(topic, fn):
        return median([v for v in (fn(r) for r in results[topic]) if v is not None])

    def lat(q):
        return lambda r: (1000 * percentile(sorted(r.latencies), q)) if r.latencies else None

    metrics = [
        ("msgs/s", lambda r: r.msgs_per_sec, 0, ">=", 0.5),
        ("MB/s (10^6 bytes of values)", lambda r: r.msgs_per_sec * args.size / 1e6 if r.msgs_per_sec else None, 1, ">=", 0.5),
        ("p50 delivery latency ms", lat(50), 2, None, None),
        ("p99 delivery latency ms", lat(99), 2, None, None),
        ("client CPU, % of one core", lambda r: 100 * r.client_cpu / r.elapsed if r.elapsed else None, 0, None, None),
        ("brokers CPU, % of one core", lambda r: 100 * r.brokers_cpu / r.elapsed if r.elapsed else None, 0, None, None),
    ]
    load_after = open("/proc/loadavg").read().split()[0]
    print()
    print(f"Replication benchmark: RF{args.replicas} acks=all against RF1 acks=all, 3 brokers")
    print(f"date:      {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(f"fjord:     commit {commit_line(root)}, release build; coordinator and 3 brokers on 127.0.0.1,")
    print(f"           fresh each round; broker defaults: {', '.join(flag_defaults(bin_dir / 'fjord-broker', BROKER_FLAGS))}")
    print(f"topics:    {rf1}: {args.partitions} partitions, RF1; {rfn}: {args.partitions} partitions, "
          f"RF{args.replicas}, min.insync.replicas={args.min_insync}")
    print(f"leaders:   {rf1} {layouts.get(rf1, '-')}")
    print(f"           {rfn} {layouts.get(rfn, '-')} (last round)")
    bound = f"{args.secs:g} s" if args.secs > 0 else ""
    if args.messages:
        bound = f"{bound} or {args.messages} messages" if bound else f"{args.messages} messages"
    if native:
        print(f"client:    kafka-load (librdkafka 2.12.1 through the rdkafka crate, a native program), "
              f"one producer per phase, every partition, client defaults plus: {shown_config}")
        print(f"workload:  {args.size}-byte values, no key, {native_messages} records per phase after "
              f"{max(1, native_messages // 10)} unmeasured ones; time until the last delivery report")
    else:
        print(f"client:    confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]}), "
              f"Python {platform.python_version()}, one producer per phase: {shown_config}")
        print(f"workload:  {args.size}-byte values, no key, as fast as the client goes with at most "
              f"{args.outstanding} unacknowledged;")
        print(f"           {args.warmup:g} s unmeasured warm-up, then {bound} measured (until the last "
              f"delivery report); latency = produce() to delivery report")
    if args.warm_memory > 0:
        print(f"memory:    {args.warm_memory:g} GiB written to shared memory and freed before the "
              f"first round (pages touched once)")
    print(f"rounds:    {args.rounds}, both topics on the same fresh cluster, alternating which goes "
          f"first; values are medians; load after {load_after}")
    print()
    width, rwidth = max(12, len(rfn)), max(9, len(rfn) + 1 + len(rf1))
    line = "{:<33} {:>%d} {:>%d} {:>%d}  {}" % (width, width, rwidth)
    print(line.format("metric", rf1, rfn, f"{rfn}/{rf1}", "target"))
    print(line.format("-" * 33, "-" * width, "-" * width, "-" * rwidth, "------"))
    for name, fn, digits, op, target in metrics:
        a, b = med(rf1, fn), med(rfn, fn)
        ratio = b / a if a and b is not None else None
        verdict = ""
        if op and ratio is not None:
            verdict = f"{op}{target} {'met' if ratio >= target else 'MISSED'}"
        print(line.format(name, fmt(a, digits), fmt(b, digits), fmt(ratio, 2), verdict))
    print(line.format("messages acknowledged, all rounds", sum(r.delivered for r in results[rf1]),
                      sum(r.delivered for r in results[rfn]), "", ""))
    print(line.format("failed deliveries, all rounds", sum(r.failed for r in results[rf1]),
                      sum(r.failed for r in results[rfn]), "", ""))
    errors = {}
    for topic in (rf1, rfn):
        for r in results[topic]:
            for k, v in r.errors.items():
                errors[f"{topic} {k}"] = errors.get(f"{topic} {k}", 0) + v
    if errors:
        print(f"delivery errors: {errors}")
    print()
    print(f"{rfn}/{rf1}: throughput higher is better (target >= 0.5); latency lower is better")
    return 0


# --- failover ------------------------------------------------------------------------


@dataclass
class Trial:
    number: int
    killed: int
    was_controller: bool
    failover: float | None = None  # kill -> first ack of a message produced after the kill
    first_report: float | None = None  # kill -> first successful report of any message
    elected: float | None = None  # kill -> a live broker's metadata names a live leader
    new_leader: int | None = None
    delivery_errors: dict[str, int] = field(default_factory=dict)
    client_errors: list[str] = field(default_factory=list)
    undelivered: int = 0


class ElectionWatch(threading.Thread):
    """Polls the metadata of the brokers still alive after a kill, and notes when the
    first of them names a live leader for the partition."""

    def __init__(self, addresses: list[str], topic: str, live_ids: set[int], t0: float):
        super().__init__(daemon=True)
        self.addresses = addresses
        self.topic = topic
        self.live_ids = live_ids
        self.t0 = t0
        self.elected: float | None = None
        self.leader: int | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set() and self.elected is None:
            for address in self.addresses:
                try:
                    m = fetch_metadata(address, [self.topic], timeout=0.5)
                except (OSError, ValueError, struct.error):
                    continue
                t = m.topics.get(self.topic)
                p = t.partitions.get(0) if t else None
                if p is not None and p.leader in self.live_ids:
                    self.elected = time.monotonic() - self.t0
                    self.leader = p.leader
                    return
            self.stop_event.wait(0.02)


def failover_trial(args, cluster: Cluster, topic: str, number: int, work: Path, extra: dict) -> Trial:
    state = cluster.wait_for_partitions(topic, 1, args.replicas, args.isr_timeout,
                                        preferred_leader=args.replicas > 1)
    leader = state.partitions[0].leader
    controller = fetch_metadata(cluster.brokers[leader].address, []).controller
    errors: list[str] = []

    def on_error(err):
        errors.append(f"{err.name()}{' (fatal)' if err.fatal() else ''}: {err.str()}")

    producer = Producer({
        "bootstrap.servers": cluster.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": args.linger_ms,
        "logger": client_logger(work / "client.log", f"producer-{number}"),
        "error_cb": on_error,
        **extra,
    })
    interval = args.interval_ms / 1000
    # (produced at, acknowledged at) of successful reports; per error name, a count.
    acks: list[tuple[float, float]] = []
    failed: dict[str, int] = {}
    sent = 0

    def on_delivery(produced_at, err, _msg):
        if err is None:
            acks.append((produced_at, time.monotonic()))
        else:
            failed[err.name()] = failed.get(err.name(), 0) + 1

    payload = os.urandom(args.size)

    def produce_one():
        nonlocal sent
        producer.produce(topic, payload, partition=0,
                         on_delivery=functools.partial(on_delivery, time.monotonic()))
        sent += 1

    try:
        # Steady state: keep sending until 1-2 s (at random) of sends have been
        # acknowledged, so that the kill falls at a random point of the client's
        # once-a-second timers (a fixed delay would measure one phase of them only).
        steady = 1.0 + random.uniform(0.0, 1.0)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        first_ack = None
        next_send = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_send:
                produce_one()
                next_send += interval
            producer.poll(max(0.0, min(next_send - time.monotonic(), 0.05)))
            if acks and first_ack is None:
                first_ack = acks[0][1]
            if first_ack is not None and time.monotonic() - first_ack >= steady:
                break
            if now > deadline:
                raise BenchError(f"trial {number}: the producer got no steady acknowledgements within "
                                 f"{STARTUP_TIMEOUT:.0f} s (errors: {errors[-3:]}, failed: {failed})")
        if any("fatal" in e for e in errors):
            raise BenchError(f"trial {number}: producer error before the kill: {errors}")

        # The kill. Pending reports are served first, so that every report counted below
        # arrived after it.
        producer.poll(0)
        victim = cluster.brokers[leader]
        live_after = {i for i in cluster.live() if i != leader}
        watch_addresses = [cluster.brokers[i].address for i in sorted(live_after)]
        reported_before = len(acks)
        t0 = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        produce_one()  # a message sent at once, so one exists from t0 on
        next_send = t0 + interval
        watch = ElectionWatch(watch_addresses, topic, live_after, t0)
        watch.start()
        victim.kill()  # reap it
        trial = Trial(number, leader, leader == controller)
        deadline = t0 + args.trial_timeout
        while True:
            now = time.monotonic()
            if now >= next_send:
                produce_one()
                next_send += interval
            producer.poll(max(0.0, min(next_send - time.monotonic(), 0.01)))
            if trial.first_report is None and len(acks) > reported_before:
                trial.first_report = acks[reported_before][1] - t0
            post = next((a for a in acks[reported_before:] if a[0] >= t0), None)
            if post is not None:
                trial.failover = post[1] - t0
                break
            if now > deadline:
                break
        watch.stop_event.set()
        watch.join(5)
        trial.elected = watch.elected
        trial.new_leader = watch.leader
        # The messages still queued should now go through; anything left is purged.
        remaining = producer.flush(10 if trial.failover is not None else 1)
        trial.undelivered = remaining
        trial.delivery_errors = dict(failed)
        trial.client_errors = [e for e in errors if "fatal" in e]
        return trial
    finally:
        producer.purge()
        producer.flush(2)


def run_failover(args) -> int:
    prog = "failover-bench"
    root = Path(args.root)
    bin_dir = Path(args.bin_dir)
    work = Path(args.work)
    extra = parse_producer_config(args.producer_config)
    if args.replicas < 1 or args.replicas > 3:
        raise BenchError("--replicas must be between 1 and 3 (the cluster has 3 brokers)")
    topic = "failover"
    broker_defaults = flag_defaults(bin_dir / "fjord-broker", BROKER_FLAGS)
    coordinator_defaults = flag_defaults(bin_dir / "fjord-coordinator", COORDINATOR_FLAGS)
    log(prog, f"broker defaults: {', '.join(broker_defaults)}")
    trials: list[Trial] = []
    cluster = Cluster(prog, bin_dir, work / "cluster", work / "pids", 3)
    try:
        cluster.start()
        log(prog, f"coordinator {cluster.coordinator.address}, brokers {cluster.bootstrap}")
        cluster.fjord("topics", "create", topic, "--partitions", "1",
                      "--replication-factor", str(args.replicas),
                      "--config", f"min.insync.replicas={args.min_insync}")
        for number in range(1, args.trials + 1):
            trial = failover_trial(args, cluster, topic, number, work, extra)
            trials.append(trial)
            log(prog, f"trial {number}/{args.trials}: killed broker {trial.killed}"
                      f"{' (the controller)' if trial.was_controller else ''}; new leader "
                      f"{trial.new_leader if trial.new_leader is not None else '-'} in metadata after "
                      f"{fmt(trial.elected, 3)} s; first ack of a message sent after the kill "
                      + (f"{trial.failover:.3f} s" if trial.failover is not None
                         else f"none within {args.trial_timeout:g} s")
                      + f"; first report of any message "
                      f"{fmt(trial.first_report, 3)} s"
                      + (f"; failed deliveries {trial.delivery_errors}" if trial.delivery_errors else "")
                      + (f"; fatal client errors {trial.client_errors}" if trial.client_errors else "")
                      + (f"; {trial.undelivered} left undelivered" if trial.undelivered else ""))
            # Bring the killed broker back on the same data directory and port.
            victim = cluster.brokers[trial.killed]
            t_restart = time.monotonic()
            victim.start(RESTART_TIMEOUT)
            t_listening = time.monotonic()
            cluster.wait_for_brokers(RESTART_TIMEOUT)
            state = cluster.wait_for_partitions(topic, 1, args.replicas, args.isr_timeout)
            log(prog, f"trial {number}/{args.trials}: broker {trial.killed} restarted, listening after "
                      f"{t_listening - t_restart:.1f} s, back in the ISR after "
                      f"{time.monotonic() - t_restart:.1f} s: {state!r}")
            if number < args.trials and args.replicas > 1:
                cluster.fjord("cluster", "rebalance-leaders")
        for problem in cluster.stop():
            log(prog, f"warning: {problem}")
    finally:
        cluster.kill_all()

    inf = float("inf")
    failover_values = [t.failover if t.failover is not None else inf for t in trials]
    elected_values = [t.elected if t.elected is not None else inf for t in trials]
    first_values = [t.first_report if t.first_report is not None else inf for t in trials]
    med = median(failover_values)
    load_after = open("/proc/loadavg").read().split()[0]
    print()
    print(f"Failover benchmark: kill -9 of a partition leader until the first acknowledged produce")
    print(f"date:      {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(f"fjord:     commit {commit_line(root)}, release build; coordinator and 3 brokers on 127.0.0.1")
    print(f"defaults:  fjord-broker {', '.join(broker_defaults)}")
    print(f"           fjord-coordinator {', '.join(coordinator_defaults)} (every server runs with its defaults)")
    print(f"topic:     {topic}: 1 partition, RF{args.replicas}, min.insync.replicas={args.min_insync}")
    extra_text = "".join(f", {k}={v}" for k, v in extra.items())
    print(f"client:    confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]}), "
          f"acks=all, enable.idempotence=true, linger.ms={args.linger_ms}{extra_text};")
    print(f"           one {args.size}-byte message every {args.interval_ms:g} ms, a new producer per trial")
    print(f"measured:  from just before the SIGKILL to the first successful delivery report of a message")
    print(f"           produced after it; a trial without one within {args.trial_timeout:g} s counts as a timeout")
    print(f"between:   the killed broker restarts (same data dir and port), rejoins the ISR, then")
    print(f"           `fjord cluster rebalance-leaders`; trials: {len(trials)}; load after {load_after}")
    print()
    line = "{:<7} {:>13} {:>11} {:>11} {:>12} {:>13}"
    print(line.format("trial", "killed leader", "controller", "new leader", "elected s", "first ack s"))
    for t in trials:
        print(line.format(t.number, t.killed, "yes" if t.was_controller else "no",
                          "-" if t.new_leader is None else t.new_leader, fmt(t.elected, 3),
                          fmt(t.failover if t.failover is not None else inf, 3)))
    print()
    line = "{:<44} {:>9} {:>9}  {}"
    print(line.format("metric", "median", "max", "target"))
    print(line.format("-" * 44, "-" * 9, "-" * 9, "------"))
    verdict = ""
    if med is not None:
        verdict = f"<={args.target:g} s {'met' if med <= args.target else 'MISSED'}"
    print(line.format("kill -> first ack on the new leader, s", fmt(med, 3),
                      fmt(max(failover_values) if trials else None, 3), verdict))
    print(line.format("kill -> new leader in metadata, s", fmt(median(elected_values), 3),
                      fmt(max(elected_values) if trials else None, 3), ""))
    print(line.format("kill -> first report of any message, s", fmt(median(first_values), 3),
                      fmt(max(first_values) if trials else None, 3), ""))
    failed_trials = sum(1 for t in trials if t.failover is None)
    print(line.format("trials without an ack (timeouts)", f"{failed_trials}/{len(trials)}", "", ""))
    print(line.format("failed deliveries, all trials",
                      sum(sum(t.delivery_errors.values()) for t in trials), "", ""))
    print(line.format("fatal producer errors, all trials", sum(len(t.client_errors) for t in trials), "", ""))
    print()
    print("failover time: lower is better (target: median <= 3 s with default settings)")
    return 0


# --- entry ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    for name in ("replication", "failover"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True)
        p.add_argument("--bin-dir", required=True)
        p.add_argument("--work", required=True)
        p.add_argument("--load-before", default="?")
        p.add_argument("--size", type=int, default=1024)
        p.add_argument("--replicas", type=int, default=3)
        p.add_argument("--min-insync", type=int, default=2)
        p.add_argument("--producer-config", action="append", default=[])
    p = sub.choices["replication"]
    p.add_argument("--secs", type=float, default=10)
    p.add_argument("--messages", type=int, default=0)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--outstanding", type=int, default=10000)
    p.add_argument("--max-secs", type=float, default=600)
    p.add_argument("--flush-timeout", type=float, default=60)
    p.add_argument("--client", choices=["python", "native"], default="python")
    p.add_argument("--load", default="")
    p.add_argument("--warm-memory", type=float, default=0)
    p = sub.choices["failover"]
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--interval-ms", type=float, default=5)
    p.add_argument("--linger-ms", type=int, default=1)
    p.add_argument("--trial-timeout", type=float, default=60)
    p.add_argument("--isr-timeout", type=float, default=120)
    p.add_argument("--target", type=float, default=3)
    args = parser.parse_args()
    prog = f"{args.bench}-bench"
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run_replication(args) if args.bench == "replication" else run_failover(args)
    except BenchError as e:
        log(prog, f"error: {e}")
        return 1
    except (KeyboardInterrupt, Terminated):
        log(prog, "interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
