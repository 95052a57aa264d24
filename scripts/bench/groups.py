"""Driver of the consumer-group benchmark `scripts/bench/groups`.

The bash entry point parses the options, builds, finds a Python with confluent-kafka and
makes the work directory; this file starts the cluster (with `broker_bench.Cluster`), runs
the consumers and prints the tables. See scripts/bench/README.md.

Every consumer is a separate process (this file, `member` subcommand), so that each is a
real group member with its own connections and heartbeats. A member has its own directory
with its stderr (`member.log`) and librdkafka's log (`client.log`). It reads one command a
line on stdin (`subscribe`, `start`, `close`) and writes one JSON event a line on stdout
(`ready`, `subscribing`, `assign`, `revoke`, `done`, `closing`, `closed`, ...), each with
the time of CLOCK_MONOTONIC, which every process on the machine shares. A member exits
when its stdin closes (the driver is gone) and after --max-secs in any case. Member pids go
to WORK/member-pids so that the entry point can remove anything left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_bench import (  # noqa: E402
    STARTUP_TIMEOUT,
    BenchError,
    Cluster,
    Terminated,
    client_logger,
    commit_line,
    cpu_seconds,
    flag_defaults,
    fmt,
    log,
    machine_lines,
    median,
)

PROG = "groups-bench"
OFFSETS_TOPIC = "__consumer_offsets"
MEMBER_START_TIMEOUT = 30.0
MEMBER_CLOSE_TIMEOUT = 30.0

# Broker flags whose defaults the header prints (every server runs with its defaults).
GROUP_BROKER_FLAGS = [
    "group-initial-rebalance-delay-ms",
    "group-min-session-timeout-ms",
    "group-max-session-timeout-ms",
    "offsets-topic-partitions",
    "offsets-topic-replication-factor",
    "session-timeout-ms",
    "fsync",
]

# librdkafka's defaults for the settings that decide how fast a classic-protocol group
# rebalances (CONFIGURATION.md of librdkafka 2.x). The benchmark leaves them alone.
CLIENT_GROUP_DEFAULTS = [
    ("session.timeout.ms", "45000"),
    ("heartbeat.interval.ms", "3000"),
    ("max.poll.interval.ms", "300000"),
    ("partition.assignment.strategy", "range,roundrobin"),
    ("group.protocol", "classic"),
]


def _on_sigterm(_signo, _frame):
    raise Terminated()


def parse_config(items: list[str], option: str) -> dict[str, str]:
    config = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"{option} {item!r}: expected KEY=VALUE")
        config[key] = value
    return config


# --- the member process ------------------------------------------------------------


def run_member(args) -> int:
    """One consumer. Rebalance mode: subscribes on `subscribe`, reports every assignment
    and revocation. Read modes (`assign`, `group`): on `start`, assigns all partitions
    from the beginning or subscribes, reads until every partition it owns is at the end
    offset it was given, reports `done`, and keeps polling (so that the group stays as it
    is) until `close`."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    def emit(event: str, **fields) -> None:
        sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
        sys.stdout.flush()

    commands: queue.Queue[str | None] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put(None)  # EOF: the driver is gone

    threading.Thread(target=read_stdin, daemon=True).start()
    signal.signal(signal.SIGTERM, _on_sigterm)

    workdir = Path(args.dir)
    errors: list[str] = []

    def on_error(err) -> None:
        errors.append(f"{err.name()}: {err.str()}")
        print(f"client error: {err.name()}{' (fatal)' if err.fatal() else ''}: {err.str()}",
              file=sys.stderr, flush=True)

    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.name,
        "logger": client_logger(workdir / "client.log", args.name),
        "error_cb": on_error,
        **parse_config(args.consumer_config, "--consumer-config"),
    }
    consumer = Consumer(config)
    ends = {int(k): v for k, v in json.loads(args.ends).items()} if args.ends else {}
    owned: list[int] = []
    positions: dict[int, int] = {}
    count = 0
    nbytes = 0
    t_first = None
    t_last = None
    cpu_start = None
    done_reported = False
    assigns = 0

    def cpu_now() -> float:
        t = os.times()
        return t.user + t.system

    def on_assign(_consumer, partitions) -> None:
        nonlocal owned, done_reported, assigns, cpu_start
        if cpu_start is None:
            cpu_start = cpu_now()
        owned = sorted(p.partition for p in partitions)
        done_reported = False
        assigns += 1
        emit("assign", partitions=owned)

    def on_revoke(_consumer, partitions) -> None:
        emit("revoke", partitions=sorted(p.partition for p in partitions))

    def on_lost(_consumer, partitions) -> None:
        emit("lost", partitions=sorted(p.partition for p in partitions))

    def subscribe() -> None:
        emit("subscribing")
        consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)

    if args.mode != "rebalance":
        # Learn the partitions' leaders first: an assign() before that waits for
        # librdkafka's offset query timer (about 0.5 s), which would be measured.
        consumer.list_topics(args.topic, timeout=10)
    emit("ready", pid=os.getpid())
    started = False
    deadline = time.monotonic() + args.max_secs
    try:
        while time.monotonic() < deadline:
            try:
                command = commands.get_nowait()
            except queue.Empty:
                command = ""
            if command is None:
                print("stdin closed; exiting", file=sys.stderr, flush=True)
                break
            if command == "subscribe" and not started:
                started = True
                subscribe()
            elif command == "start" and not started:
                started = True
                if args.mode == "assign":
                    cpu_start = cpu_now()
                    emit("subscribing")
                    owned = list(range(args.partitions))
                    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in owned])
                    emit("assign", partitions=owned)
                    assigns += 1
                else:
                    subscribe()
            elif command == "close":
                emit("closing")
                consumer.close()
                emit("closed", errors=errors[-5:])
                return 0
            elif command:
                print(f"unknown command {command!r}", file=sys.stderr, flush=True)

            if not started:
                time.sleep(0.02)
                continue
            if args.mode == "rebalance":
                message = consumer.poll(0.02)
                if message is not None and message.error():
                    print(f"consumer error: {message.error()}", file=sys.stderr, flush=True)
                continue
            # Read modes.
            messages = consumer.consume(1000, 0.01)
            if messages:
                for m in messages:
                    if m.error():
                        print(f"consumer error: {m.error()}", file=sys.stderr, flush=True)
                        continue
                    count += 1
                    nbytes += len(m.value())
                    positions[m.partition()] = m.offset()
                t_last = time.monotonic()
                if t_first is None:
                    t_first = t_last
            if (not done_reported and assigns and owned is not None
                    and all(positions.get(p, -1) + 1 >= ends.get(p, 0) for p in owned)):
                done_reported = True
                emit("done", partitions=owned, count=count, bytes=nbytes, t_first=t_first,
                     t_last=t_last, cpu=cpu_now() - (cpu_start or 0.0), assigns=assigns)
        else:
            print(f"no close within --max-secs {args.max_secs:g}; exiting", file=sys.stderr, flush=True)
    except (KeyboardInterrupt, Terminated):
        pass
    except KafkaException as e:
        print(f"KafkaException: {e}", file=sys.stderr, flush=True)
        emit("failed", error=str(e))
        return 1
    consumer.close()
    return 0


# --- members, as the driver sees them ------------------------------------------------


@dataclass
class Member:
    name: str
    process: subprocess.Popen
    workdir: Path
    events: list[dict] = field(default_factory=list)
    exited: bool = False

    def send(self, command: str) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise BenchError(f"{self.name} is gone ({e}); log {self.workdir / 'member.log'}: "
                             f"{self.log_tail()}") from None

    def last(self, *kinds: str, since: float = float("-inf")) -> dict | None:
        for e in reversed(self.events):
            if e["event"] in kinds and e["t"] >= since:
                return e
        return None

    def since(self, t0: float, *kinds: str) -> list[dict]:
        return [e for e in self.events if e["t"] >= t0 and e["event"] in kinds]

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.workdir / "member.log").read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(text.splitlines()[-lines:]) or "(empty)"


class Members:
    """Starts member processes and collects their events through one queue."""

    def __init__(self, python: str, work: Path, bootstrap: str, consumer_config: list[str]):
        self.python = python
        self.dir = work / "members"
        self.dir.mkdir(exist_ok=True)
        self.pids_file = work / "member-pids"
        self.client_log = work / "client.log"
        self.bootstrap = bootstrap
        self.consumer_config = consumer_config
        self.queue: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.all: dict[str, Member] = {}
        self.counter = 0

    def spawn(self, group: str, topic: str, mode: str, partitions: int = 0, ends: dict | None = None,
              config: list[str] | None = None, prefix: str = "member") -> Member:
        self.counter += 1
        name = f"{prefix}-{self.counter}"
        workdir = self.dir / name
        workdir.mkdir()
        command = [
            self.python, "-u", str(Path(__file__).resolve()), "member",
            "--bootstrap", self.bootstrap, "--group", group, "--topic", topic, "--name", name,
            "--dir", str(workdir), "--mode", mode, "--partitions", str(partitions),
            "--ends", json.dumps(ends or {}),
        ]
        for item in [*self.consumer_config, *(config or [])]:
            command += ["--consumer-config", item]
        with open(workdir / "member.log", "ab") as err:
            process = subprocess.Popen(command, cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=err, text=True, bufsize=1)
        with open(self.pids_file, "a") as f:
            f.write(f"{process.pid}\n")
        member = Member(name, process, workdir)
        self.all[name] = member
        threading.Thread(target=self._read, args=(member,), daemon=True).start()
        return member

    def _read(self, member: Member) -> None:
        assert member.process.stdout is not None
        for line in member.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "garbage", "t": time.monotonic(), "line": line.rstrip()}
            self.queue.put((member.name, event))
        self.queue.put((member.name, {"event": "exit", "t": time.monotonic()}))

    def pump(self, timeout: float) -> int:
        """Moves the queued events to their members, waiting up to `timeout` for the
        first; returns how many."""
        moved = 0
        try:
            name, event = self.queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return 0
        while True:
            member = self.all[name]
            member.events.append(event)
            if event["event"] == "exit":
                member.exited = True
            moved += 1
            try:
                name, event = self.queue.get_nowait()
            except queue.Empty:
                return moved

    def wait_event(self, members: list[Member], kind: str, timeout: float, since: float = float("-inf")) -> None:
        deadline = time.monotonic() + timeout
        while True:
            missing = [m for m in members if m.last(kind, since=since) is None]
            if not missing:
                return
            for m in missing:
                if m.exited:
                    raise BenchError(f"{m.name} exited before '{kind}' (exit code {m.process.poll()}); "
                                     f"log {m.workdir / 'member.log'}: {m.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:.0f} s waiting for '{kind}' from "
                                 f"{', '.join(m.name for m in missing)}")
            self.pump(0.05)

    def close(self, members: list[Member], timeout: float = MEMBER_CLOSE_TIMEOUT) -> None:
        """`close` to each, then waits for them to exit; kills what is left."""
        for m in members:
            if m.process.poll() is None:
                try:
                    m.send("close")
                except BenchError:
                    pass
        deadline = time.monotonic() + timeout
        for m in members:
            try:
                m.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(PROG, f"warning: {m.name} did not exit within {timeout:.0f} s of close; killing it")
                m.process.kill()
                m.process.wait(5)
        self.pump(0)

    def kill_all(self) -> None:
        for m in self.all.values():
            if m.process.poll() is None:
                m.process.kill()
        for m in self.all.values():
            try:
                m.process.wait(5)
            except subprocess.TimeoutExpired:
                pass


# --- cluster helpers ---------------------------------------------------------------


def warm_up_offsets_topic(cluster: Cluster, replicas: int, partitions_flag: str, timeout: float) -> None:
    """The broker creates __consumer_offsets on the first FindCoordinator. Ask for a
    group's committed offsets (which needs its coordinator) until it answers, then wait
    until the topic is fully replicated, so that no measurement pays for its creation."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": cluster.bootstrap,
        "group.id": "groups-bench-warmup",
        "logger": client_logger(cluster.workdir.parent / "client.log", "warmup"),
    })
    deadline = time.monotonic() + timeout
    last = None
    try:
        while True:
            try:
                consumer.committed([TopicPartition("warmup", 0)], timeout=5)
                break
            except KafkaException as e:
                last = e
            if time.monotonic() > deadline:
                raise BenchError(f"no group coordinator answered within {timeout:.0f} s: {last}")
            time.sleep(0.2)
    finally:
        consumer.close()
    count = int(partitions_flag) if partitions_flag.isdigit() else None
    if count is not None:
        cluster.wait_for_partitions(OFFSETS_TOPIC, count, min(3, replicas), timeout)


def describe_group(bootstrap: str, group: str, log_path: Path) -> tuple[str, dict[str, list[int]]] | str:
    """(state, {client id: partitions}) as DescribeGroups shows it, or the error."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap,
                         "logger": client_logger(log_path, "admin")})
    try:
        description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    except Exception as e:  # noqa: BLE001 - any failure is only reported
        return f"describe failed: {e}"
    members = {}
    for m in description.members:
        parts = sorted(tp.partition for tp in (m.assignment.topic_partitions if m.assignment else []))
        members[m.client_id] = parts
    return description.state.name, members


def broker_cpu(cluster: Cluster) -> float:
    return sum(cpu_seconds(b.pid) for b in cluster.brokers.values() if b.running)


# --- rebalance -----------------------------------------------------------------------


@dataclass
class Rebalance:
    trial: int
    kind: str  # "join 8->9", ...
    seconds: float | None = None  # trigger -> every member has its new assignment
    detect: float | None = None  # trigger -> first revocation at an existing member
    last_revoke: float | None = None  # trigger -> last revocation (the last member to learn)
    close: float | None = None  # leave: the leaving member's close() call
    extra: int = 0  # assignments seen after the consistent one, within the settle time
    note: str = ""


def check_assignment(members: list[Member], t0: float, partitions: int) -> tuple[bool, str, float | None]:
    """Whether every member has been assigned since t0, its last rebalance event is that
    assignment, and the assignments split the partitions exactly; the time of the last."""
    latest = []
    waiting = []
    for m in members:
        e = m.last("assign", "revoke", "lost", since=t0)
        if e is None or e["event"] != "assign":
            waiting.append(m.name)
        else:
            latest.append((m, e))
    if waiting:
        return False, f"waiting for {', '.join(waiting)}", None
    owners: dict[int, list[str]] = {}
    for m, e in latest:
        for p in e["partitions"]:
            owners.setdefault(p, []).append(m.name)
    twice = {p: o for p, o in owners.items() if len(o) > 1}
    unowned = sorted(set(range(partitions)) - set(owners))
    if twice or unowned or set(owners) - set(range(partitions)):
        return False, f"inconsistent: owned twice {twice}, unowned {unowned}", None
    return True, "consistent", max(e["t"] for _, e in latest)


def wait_rebalance(pool: Members, expected: list[Member], t0: float, partitions: int,
                   timeout: float) -> tuple[float | None, str]:
    deadline = t0 + timeout
    status = ""
    while True:
        for m in expected:
            if m.exited:
                raise BenchError(f"{m.name} exited during a rebalance (exit code {m.process.poll()}); "
                                 f"log {m.workdir / 'member.log'}: {m.log_tail()}")
        ok, status, t_done = check_assignment(expected, t0, partitions)
        if ok:
            return t_done, status
        if time.monotonic() > deadline:
            return None, status
        pool.pump(0.02)


def settle(pool: Members, expected: list[Member], t_done: float, seconds: float) -> int:
    """Waits `seconds`, then counts the assignments made after the consistent one."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pool.pump(min(0.1, max(0.0, end - time.monotonic())))
    return sum(len([e for e in m.since(t_done, "assign") if e["t"] > t_done]) for m in expected)


def verify_group(bootstrap: str, group: str, expected: list[Member], log_path: Path) -> str:
    """Compares DescribeGroups with what the members' callbacks said; '' when they agree."""
    described = describe_group(bootstrap, group, log_path)
    if isinstance(described, str):
        return described
    state, members = described
    mine = {m.name: (m.last("assign") or {}).get("partitions") for m in expected}
    if state != "STABLE" or members != mine:
        return f"DescribeGroups: state {state}, members {members}; callbacks: {mine}"
    return ""


def run_rebalance(args, cluster: Cluster, pool: Members) -> tuple[list[Rebalance], float | None, list[str]]:
    topic = "rebalance"
    group = "groups-bench-rebalance"
    cluster.fjord("topics", "create", topic, "--partitions", str(args.rebalance_partitions),
                  "--replication-factor", str(args.replicas))
    cluster.wait_for_partitions(topic, args.rebalance_partitions, args.replicas, STARTUP_TIMEOUT)
    n = args.members
    problems: list[str] = []

    def spawn() -> Member:
        return pool.spawn(group, topic, "rebalance")

    # The group of N, all subscribing at once to an empty group (the initial delay applies).
    group_members = [spawn() for _ in range(n)]
    pool.wait_event(group_members, "ready", MEMBER_START_TIMEOUT)
    for m in group_members:
        m.send("subscribe")
    pool.wait_event(group_members, "subscribing", MEMBER_START_TIMEOUT)
    t0 = min(m.last("subscribing")["t"] for m in group_members)
    t_done, status = wait_rebalance(pool, group_members, t0, args.rebalance_partitions, args.trial_timeout)
    if t_done is None:
        raise BenchError(f"the first {n} members got no consistent assignment within "
                         f"{args.trial_timeout:g} s: {status}")
    formation = t_done - t0
    extra = settle(pool, group_members, t_done, args.settle)
    log(PROG, f"group of {n} formed {formation:.3f} s after the first subscribe"
              + (f"; {extra} more assignments after it" if extra else ""))
    mismatch = verify_group(cluster.bootstrap, group, group_members, pool.client_log)
    if mismatch:
        problems.append(f"after forming: {mismatch}")
        log(PROG, f"warning: after forming: {mismatch}")

    results: list[Rebalance] = []
    joiner = spawn()
    rng = random.Random(args.seed)

    def pause() -> None:
        """A random wait of up to --jitter seconds before a trigger. After a rebalance
        every member's heartbeat timer starts at the same moment, so a trigger a fixed
        time later would always meet the same heartbeat phase."""
        end = time.monotonic() + rng.uniform(0, args.jitter)
        while time.monotonic() < end:
            pool.pump(min(0.1, max(0.0, end - time.monotonic())))

    def measure(trial: int, kind: str, expected: list[Member], t0: float, leaver: Member | None) -> Rebalance:
        r = Rebalance(trial, kind)
        t_done, status = wait_rebalance(pool, expected, t0, args.rebalance_partitions, args.trial_timeout)
        revokes = [e["t"] for m in expected for e in m.since(t0, "revoke")]
        r.detect = (min(revokes) - t0) if revokes else None
        r.last_revoke = (max(revokes) - t0) if revokes else None
        if leaver is not None:
            closed = leaver.last("closed", since=t0)
            r.close = closed["t"] - t0 if closed else None
        if t_done is None:
            r.note = f"timeout: {status}"
            log(PROG, f"trial {trial}/{args.trials}: {kind}: no consistent assignment within "
                      f"{args.trial_timeout:g} s: {status}")
            return r
        r.seconds = t_done - t0
        r.extra = settle(pool, expected, t_done, args.settle)
        mismatch = verify_group(cluster.bootstrap, group, expected, pool.client_log)
        if mismatch:
            r.note = mismatch
            problems.append(f"trial {trial} {kind}: {mismatch}")
        log(PROG, f"trial {trial}/{args.trials}: {kind}: all assigned after {r.seconds:.3f} s "
                  f"(revocations from {fmt(r.detect, 3)} to {fmt(r.last_revoke, 3)} s"
                  + (f", close() {fmt(r.close, 3)} s" if leaver is not None else "") + ")"
                  + (f"; {r.extra} more assignments within {args.settle:g} s" if r.extra else "")
                  + (f"; {mismatch}" if mismatch else ""))
        return r

    def leave(trial: int, kind: str) -> Rebalance:
        leaver = group_members.pop(0)  # the longest in the group
        pause()
        leaver.send("close")
        pool.wait_event([leaver], "closing", MEMBER_START_TIMEOUT)
        r = measure(trial, kind, group_members, leaver.last("closing")["t"], leaver)
        pool.wait_event([leaver], "closed", MEMBER_CLOSE_TIMEOUT)
        pool.close([leaver])
        return r

    def join(trial: int, kind: str) -> Rebalance:
        nonlocal joiner
        pool.wait_event([joiner], "ready", MEMBER_START_TIMEOUT)
        member = joiner
        pause()
        member.send("subscribe")
        pool.wait_event([member], "subscribing", MEMBER_START_TIMEOUT)
        group_members.append(member)
        r = measure(trial, kind, group_members, member.last("subscribing")["t"], None)
        joiner = spawn()  # ready (imported, connected) by the next join
        return r

    # Each trial, from a stable group of N: one leaves (N -> N-1), one joins back
    # (N-1 -> N), one more joins (N -> N+1), one leaves again (N+1 -> N).
    for trial in range(1, args.trials + 1):
        for step, kind in [(leave, f"leave {n}->{n - 1}"), (join, f"join {n - 1}->{n}"),
                           (join, f"join {n}->{n + 1}"), (leave, f"leave {n + 1}->{n}")]:
            r = step(trial, kind)
            results.append(r)
            cluster.check_alive(f"during {kind}")
            if r.seconds is None:
                problems.append(f"trial {trial} {kind}: {r.note}")
                return results, formation, problems
    pool.close([*group_members, joiner])
    return results, formation, problems


# --- throughput ----------------------------------------------------------------------


@dataclass
class Read:
    round: int
    mode: str  # "assign" or "group"
    consumers: int
    variant: int = 0  # 0: client defaults; 1: with --read-config
    count: int = 0
    nbytes: int = 0
    window: float = 0.0  # first assignment -> last message
    from_start: float = 0.0  # start command -> last message
    consumer_cpu: float = 0.0  # each consumer from its first assignment to its last message
    brokers_cpu: float = 0.0  # from the first assignment the driver saw to the end
    assigns: int = 0  # assignments seen by all consumers together

    @property
    def msgs_per_sec(self) -> float | None:
        return self.count / self.window if self.window > 0 else None


def produce_all(args, cluster: Cluster, topic: str, work: Path) -> tuple[dict[int, int], float]:
    """Produces --messages values of --size bytes, round robin over the partitions, and
    returns the end offset of each partition and the time it took."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    producer = Producer({
        "bootstrap.servers": cluster.bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "logger": client_logger(work / "client.log", "producer"),
    })
    payload = os.urandom(args.size)
    failed: dict[str, int] = {}
    delivered = 0

    def on_delivery(err, _msg):
        nonlocal delivered
        if err is None:
            delivered += 1
        else:
            failed[err.name()] = failed.get(err.name(), 0) + 1

    start = time.monotonic()
    deadline = start + args.produce_timeout
    sent = 0
    while sent < args.messages:
        if time.monotonic() > deadline:
            raise BenchError(f"producing {args.messages} messages took over {args.produce_timeout:g} s")
        try:
            producer.produce(topic, payload, partition=sent % args.partitions, on_delivery=on_delivery)
            sent += 1
        except BufferError:
            producer.poll(0.005)
            continue
        if sent % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(max(1.0, deadline - time.monotonic()))
    elapsed = time.monotonic() - start
    if remaining or failed or delivered != args.messages:
        raise BenchError(f"pre-production: {delivered} delivered, {remaining} still queued, failed {failed}")
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "groups-bench-offsets",
                         "logger": client_logger(work / "client.log", "offsets")})
    try:
        ends = {}
        for p in range(args.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
    finally:
        consumer.close()
    if sum(ends.values()) != args.messages:
        raise BenchError(f"the partitions' end offsets {ends} do not add up to {args.messages}")
    return ends, elapsed


def read_all(args, cluster: Cluster, pool: Members, topic: str, ends: dict[int, int], round_no: int,
             mode: str, variant: int, variant_config: list[str]) -> Read:
    consumers = 1 if mode == "assign" else args.consumers
    group = f"groups-bench-{mode}-{round_no}-{variant}"
    config = [*([] if mode == "assign" else ["auto.offset.reset=earliest"]), *variant_config]
    members = [pool.spawn(group, topic, mode, args.partitions, ends, config,
                          prefix=f"{mode}-r{round_no}{'-tuned' if variant else ''}")
               for _ in range(consumers)]
    try:
        pool.wait_event(members, "ready", MEMBER_START_TIMEOUT)
        brokers_before = None
        for m in members:
            m.send("start")
        pool.wait_event(members, "subscribing", MEMBER_START_TIMEOUT)
        t_start = min(m.last("subscribing")["t"] for m in members)
        deadline = time.monotonic() + args.read_timeout
        while True:
            if brokers_before is None and any(m.last("assign") for m in members):
                brokers_before = broker_cpu(cluster)
            cluster.check_alive(f"during the {mode} read")
            for m in members:
                if m.exited:
                    raise BenchError(f"{m.name} exited during the read; log {m.workdir / 'member.log'}: "
                                     f"{m.log_tail()}")
                failed = m.last("failed")
                if failed:
                    raise BenchError(f"{m.name}: {failed['error']}")
            dones = [m.last("done") for m in members]
            if all(dones):
                # Done for the assignment each has now, and together every partition.
                current = [m.last("assign") for m in members]
                covered = set()
                for d, a in zip(dones, current):
                    if a is not None and d["t"] >= a["t"]:
                        covered.update(d["partitions"])
                if covered == set(range(args.partitions)) and all(
                        d["t"] >= a["t"] for d, a in zip(dones, current) if a is not None):
                    break
            if time.monotonic() > deadline:
                progress = {m.name: m.last("done") or m.last("assign") for m in members}
                raise BenchError(f"the {mode} read did not finish within {args.read_timeout:g} s: {progress}")
            pool.pump(0.05)
        brokers_after = broker_cpu(cluster)
        r = Read(round_no, mode, consumers, variant)
        t_assign = min(e["t"] for m in members for e in m.since(t_start, "assign"))
        t_last = max(d["t_last"] for d in dones if d["t_last"] is not None)
        r.count = sum(d["count"] for d in dones)
        r.nbytes = sum(d["bytes"] for d in dones)
        r.window = t_last - t_assign
        r.from_start = t_last - t_start
        r.consumer_cpu = sum(d["cpu"] for d in dones)
        r.brokers_cpu = brokers_after - (brokers_before if brokers_before is not None else brokers_after)
        r.assigns = sum(len(m.since(t_start, "assign")) for m in members)
        return r
    finally:
        pool.close(members)


def run_throughput(args, cluster: Cluster, pool: Members, work: Path) -> tuple[list[Read], float]:
    topic = "groups-read"
    cluster.fjord("topics", "create", topic, "--partitions", str(args.partitions),
                  "--replication-factor", str(args.replicas))
    cluster.wait_for_partitions(topic, args.partitions, args.replicas, STARTUP_TIMEOUT)
    ends, produce_secs = produce_all(args, cluster, topic, work)
    log(PROG, f"produced {args.messages} messages of {args.size} bytes in {produce_secs:.1f} s "
              f"({args.messages / produce_secs:.0f} msgs/s); end offsets {ends}")
    reads: list[Read] = []
    variants = [[]] + ([args.read_config] if args.read_config else [])
    for round_no in range(1, args.rounds + 1):
        order = ["assign", "group"] if round_no % 2 == 1 else ["group", "assign"]
        for variant, variant_config in enumerate(variants):
            for mode in order:
                r = read_all(args, cluster, pool, topic, ends, round_no, mode, variant, variant_config)
                reads.append(r)
                log(PROG, f"round {round_no}/{args.rounds}: {', '.join(variant_config) or 'client defaults'}: "
                          f"{mode} ({r.consumers} consumer{'s' if r.consumers > 1 else ''}): {r.count} msgs "
                          f"in {r.window:.2f} s, {fmt(r.msgs_per_sec)} msgs/s; {r.from_start:.2f} s from the "
                          f"start command; {r.assigns} assignment{'s' if r.assigns != 1 else ''}")
    return reads, produce_secs


# --- the report ----------------------------------------------------------------------


def print_read_table(args, reads: list[Read], title: str) -> None:
    print()
    by = {"assign": [r for r in reads if r.mode == "assign"], "group": [r for r in reads if r.mode == "group"]}

    def med(mode, fn):
        return median([v for v in (fn(r) for r in by[mode]) if v is not None])

    group_label = f"group of {args.consumers}"
    line = "{:<44} {:>12} {:>12} {:>12}"
    print(line.format(f"consumers with {title}", "assign", group_label, "group/assign"))
    print(line.format("-" * 44, "-" * 12, "-" * 12, "-" * 12))
    metrics = [
        ("msgs/s", lambda r: r.msgs_per_sec, 0, True),
        ("MB/s (10^6 bytes of values)", lambda r: r.nbytes / r.window / 1e6 if r.window > 0 else None, 1, True),
        ("read time, s", lambda r: r.window, 2, False),
        ("start to last message (with the join), s", lambda r: r.from_start, 2, False),
        ("consumers CPU, % of one core", lambda r: 100 * r.consumer_cpu / r.window if r.window > 0 else None, 0, True),
        ("brokers CPU, % of one core", lambda r: 100 * r.brokers_cpu / r.window if r.window > 0 else None, 0, True),
    ]
    for name, fn, digits, ratio in metrics:
        a, g = med("assign", fn), med("group", fn)
        rr = g / a if ratio and a and g is not None else None
        print(line.format(name, fmt(a, digits), fmt(g, digits), fmt(rr, 2)))
    print(line.format("messages read, all rounds", sum(r.count for r in by["assign"]),
                      sum(r.count for r in by["group"]), ""))
    print(line.format("expected, all rounds", args.messages * len(by["assign"]),
                      args.messages * len(by["group"]), ""))
    print(line.format("assignments, all rounds", sum(r.assigns for r in by["assign"]),
                      sum(r.assigns for r in by["group"]), ""))


def print_report(args, root: Path, bin_dir: Path, work: Path, rebalances: list[Rebalance],
                 formation: float | None, problems: list[str], reads: list[Read],
                 produce_secs: float | None, broker_defaults: list[str]) -> None:
    import confluent_kafka

    load_after = open("/proc/loadavg").read().split()[0]
    n = args.members
    print()
    print("Consumer-group benchmark: rebalance time and group read throughput, 3 brokers")
    print(f"date:      {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(f"fjord:     commit {commit_line(root)}, release build; coordinator and 3 brokers on 127.0.0.1")
    print(f"defaults:  fjord-broker {', '.join(broker_defaults)}")
    print("           (every server runs with its defaults)")
    extra = parse_config(args.consumer_config, "--consumer-config")
    print(f"client:    confluent-kafka {confluent_kafka.__version__} (librdkafka "
          f"{confluent_kafka.libversion()[0]}), Python {platform.python_version()}, each consumer its own process;")
    print(f"           librdkafka defaults: {', '.join(f'{k}={v}' for k, v in CLIENT_GROUP_DEFAULTS)}"
          + (f"; set: {', '.join(f'{k}={v}' for k, v in extra.items())}" if extra else ""))
    print(f"load:      after the run {load_after}")

    if not args.only or args.only == "rebalance":
        print()
        print(f"Rebalance: a group of {n} on topic `rebalance` ({args.rebalance_partitions} partitions, "
              f"RF{args.replicas}), no messages.")
        print("measured:  from the joining member's subscribe() (or the leaving member's close()) until every")
        print("           member has had on_assign since, and the assignments split the partitions exactly once")
        print(f"trials:    {args.trials}, each from a stable group of {n}: leave {n}->{n - 1}, join {n - 1}->{n}, "
              f"join {n}->{n + 1}, leave {n + 1}->{n};")
        print(f"           {args.settle:g} s settle after each (later assignments are counted as extra), then a")
        print(f"           random 0-{args.jitter:g} s pause before the next trigger (seed {args.seed})")
        print()
        line = "{:<6} {:<13} {:>12} {:>11} {:>11} {:>8} {:>6}  {}"
        print(line.format("trial", "change", "all assigned", "1st revoke", "last revoke", "close()", "extra", "note"))
        for r in rebalances:
            print(line.format(r.trial, r.kind, fmt(r.seconds if r.seconds is not None else float("inf"), 3),
                              fmt(r.detect, 3), fmt(r.last_revoke, 3), fmt(r.close, 3), r.extra, r.note[:80]))
        print()
        line = "{:<52} {:>8} {:>8} {:>7}"
        print(line.format("rebalance, seconds", "median", "max", "trials"))
        print(line.format("-" * 52, "-" * 8, "-" * 8, "-" * 7))
        kinds = [(f"join {n}->{n + 1}", f"a member joins a group of {n} ({n}->{n + 1})"),
                 (f"leave {n}->{n - 1}", f"a member leaves a group of {n} ({n}->{n - 1})"),
                 (f"join {n - 1}->{n}", f"a member joins a group of {n - 1} ({n - 1}->{n})"),
                 (f"leave {n + 1}->{n}", f"a member leaves a group of {n + 1} ({n + 1}->{n})")]

        def row(label, values):
            print(line.format(label, fmt(median(values), 3), fmt(max(values) if values else None, 3), len(values)))

        for kind, label in kinds:
            row(label, [r.seconds if r.seconds is not None else float("inf") for r in rebalances if r.kind == kind])
        row("any of the four", [r.seconds if r.seconds is not None else float("inf") for r in rebalances])
        row("any: trigger -> first member revokes", [r.detect for r in rebalances if r.detect is not None])
        row("any: trigger -> last member revokes", [r.last_revoke for r in rebalances if r.last_revoke is not None])
        row("any: last revocation -> all assigned",
            [r.seconds - r.last_revoke for r in rebalances if r.seconds is not None and r.last_revoke is not None])
        row("leave: the leaving member's close() call", [r.close for r in rebalances if r.close is not None])
        print(line.format(f"first forming of the group of {n} (initial delay applies)", fmt(formation, 3), "", 1))
        print(line.format("assignments after the consistent one, all trials",
                          sum(r.extra for r in rebalances), "", ""))
        for p in problems:
            print(f"problem:   {p}")

    if not args.only or args.only == "throughput":
        print()
        print(f"Read throughput: topic `groups-read`, {args.partitions} partitions, RF{args.replicas}, "
              f"{args.messages} messages of {args.size} bytes (pre-produced in {fmt(produce_secs, 1)} s)")
        print("assign:    one consumer process, assign() of every partition from the beginning")
        print(f"group:     {args.consumers} consumer processes in a new group (subscribe(), "
              f"auto.offset.reset=earliest), started together")
        print("measured:  from the first assignment (the assign() call, or the first on_assign) to the last")
        print("           message read by any consumer (CPU: over that time); consumers do len(value) per")
        print("           message; client defaults otherwise (enable.auto.commit=true)")
        print(f"rounds:    {args.rounds}, all reads of the same data, alternating assign and group; medians")
        if args.read_config:
            print(f"tuned:     each round also reads both ways with {', '.join(args.read_config)} for every consumer:")
            print("           librdkafka stops fetching for fetch.queue.backoff.ms (1000 ms by default) whenever its")
            print("           queue holds over queued.min.messages (100000), which one consumer of 8 partitions")
            print("           reaches with one 1 MB fetch (max.partition.fetch.bytes) from each")
        variants = [[]] + ([args.read_config] if args.read_config else [])
        for variant, variant_config in enumerate(variants):
            print_read_table(args, [r for r in reads if r.variant == variant],
                             ", ".join(variant_config) or "client defaults")
    print()
    print("rebalance: lower is better; throughput: higher is better")


def run(args) -> int:
    root = Path(args.root)
    bin_dir = Path(args.bin_dir)
    work = Path(args.work)
    if args.replicas < 1 or args.replicas > 3:
        raise BenchError("--replicas must be between 1 and 3 (the cluster has 3 brokers)")
    broker_defaults = flag_defaults(bin_dir / "fjord-broker", GROUP_BROKER_FLAGS)
    log(PROG, f"broker defaults: {', '.join(broker_defaults)}")
    offsets_partitions = next((d.split()[1] for d in broker_defaults
                               if d.startswith("--offsets-topic-partitions ")), "")
    cluster = Cluster(PROG, bin_dir, work / "cluster", work / "pids", 3)
    pool: Members | None = None
    rebalances: list[Rebalance] = []
    formation = None
    problems: list[str] = []
    reads: list[Read] = []
    produce_secs = None
    try:
        cluster.start()
        log(PROG, f"coordinator {cluster.coordinator.address}, brokers {cluster.bootstrap}")
        warm_up_offsets_topic(cluster, 3, offsets_partitions, 120)
        log(PROG, f"{OFFSETS_TOPIC} is fully replicated")
        pool = Members(args.python, work, cluster.bootstrap, args.consumer_config)
        if not args.only or args.only == "rebalance":
            rebalances, formation, problems = run_rebalance(args, cluster, pool)
        if not args.only or args.only == "throughput":
            reads, produce_secs = run_throughput(args, cluster, pool, work)
        for problem in cluster.stop():
            log(PROG, f"warning: {problem}")
    finally:
        if pool is not None:
            pool.kill_all()
        cluster.kill_all()
    print_report(args, root, bin_dir, work, rebalances, formation, problems, reads, produce_secs, broker_defaults)
    return 1 if any(r.seconds is None for r in rebalances) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--root", required=True)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--load-before", default="?")
    p.add_argument("--only", choices=["rebalance", "throughput"], default=None)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--rebalance-partitions", type=int, default=24)
    p.add_argument("--settle", type=float, default=4)
    p.add_argument("--jitter", type=float, default=3)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--trial-timeout", type=float, default=120)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--consumers", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--read-timeout", type=float, default=600)
    p.add_argument("--produce-timeout", type=float, default=600)
    p.add_argument("--consumer-config", action="append", default=[])
    p.add_argument("--read-config", action="append", default=[])
    m = sub.add_parser("member")
    m.add_argument("--bootstrap", required=True)
    m.add_argument("--group", required=True)
    m.add_argument("--topic", required=True)
    m.add_argument("--name", required=True)
    m.add_argument("--dir", required=True)
    m.add_argument("--mode", choices=["rebalance", "assign", "group"], required=True)
    m.add_argument("--partitions", type=int, default=0)
    m.add_argument("--ends", default="")
    m.add_argument("--max-secs", type=float, default=3600)
    m.add_argument("--consumer-config", action="append", default=[])
    args = parser.parse_args()
    if args.command == "run" and args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if args.command == "member":
        return run_member(args)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run(args)
    except BenchError as e:
        log(PROG, f"error: {e}")
        return 1
    except (KeyboardInterrupt, Terminated):
        log(PROG, "interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
