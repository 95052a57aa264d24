"""Consumer-group members in processes of their own (group_member.py), what
they report, and the checks the group tests make on it.

A member appends events to a file (see group_member.py): assignments with
their generation and member id, revocations, the records it processed and
the offsets it committed. From all members' events:

- `owners_by_generation` / `double_owners`: which member owned which
  partitions in each generation; a partition with two owners in one
  generation is a violation of the group protocol;
- `check_consumption`: every produced (partition, offset) was processed by
  some member with the value produced (nothing skipped); each time a
  member takes a partition over, it starts at or after the last offset
  committed for it (nothing before a committed offset read again), and at
  most one past the last offset processed by anyone (nothing skipped);
  within one ownership the offsets follow each other with no gap;
  duplicates (records processed twice) are counted, and may only come
  from processed-but-uncommitted records, which the start rule enforces.

Also: the broker flags the group tests share, `__consumer_offsets` made
ready, committed offsets from AdminClient, and which `__consumer_offsets`
partition (so which broker) coordinates a group.

Every wait here has a deadline.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from kafka_helpers import WAIT, admin_client, admin_results, fully_replicated, wait_for_partitions

HERE = Path(__file__).resolve().parent
MEMBER_SCRIPT = HERE / "group_member.py"

# Every test's brokers: a short initial rebalance delay (the default 3 s
# is there to let a fleet of consumers start), a small offsets topic so
# that it is created quickly.
OFFSETS_PARTITIONS = 6
GROUP_FLAGS = {
    "group_initial_rebalance_delay_ms": 300,
    "offsets_topic_partitions": OFFSETS_PARTITIONS,
    "replica_lag_time_max_ms": 3000,
    "auto_leader_rebalance": "false",
}
# Consumers' session timeout: the broker's minimum (group.min.session.timeout.ms).
MEMBER_SESSION_MS = 6000


class MemberProcess:
    """One group_member.py process. Its events go to `<workdir>/<name>.events`,
    its stderr (librdkafka's log) to `<workdir>/<name>.log`."""

    def __init__(self, workdir: Path, name: str, bootstrap: str, group: str, topic: str, **options):
        self.name = name
        self.events_path = workdir / f"{name}.events"
        self.log_path = workdir / f"{name}.log"
        self.command = [
            sys.executable,
            str(MEMBER_SCRIPT),
            "--bootstrap",
            bootstrap,
            "--group",
            group,
            "--topic",
            topic,
            "--out",
            str(self.events_path),
            "--client-id",
            name,
        ]
        for key, value in options.items():
            self.command += [f"--{key.replace('_', '-')}", str(value)]
        self.process: subprocess.Popen | None = None

    def start(self) -> MemberProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=HERE
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no LeaveGroup, no commit."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM: the member commits what it processed, leaves the group
        and exits; killed if it has not after `timeout` seconds. Returns
        the exit code (None if it had to be killed)."""
        if not self.running:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def events(self) -> list[dict]:
        """Every whole line written so far."""
        try:
            data = self.events_path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in data.split(b"\n"):
            if line:
                event = json.loads(line)
                event["who"] = self.name
                out.append(event)
        return out

    def current(self) -> tuple[int | None, str | None, frozenset[int]] | None:
        """(generation, member id, partitions owned) after the member's
        last assignment, or None if it owns nothing (never assigned, or
        revoked since)."""
        generation = member = None
        owned: set[int] = set()
        assigned = False
        for e in self.events():
            if e["ev"] == "assign":
                generation, member, assigned = e["generation"], e["member"], True
                owned |= set(e["partitions"])
            elif e["ev"] in ("revoke", "lost"):
                owned -= set(e["partitions"])
                assigned = False
            elif e["ev"] == "closed":
                return None
        if not assigned:
            return None
        return generation, member, frozenset(owned)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def all_events(members) -> list[dict]:
    """Every member's events, in time order."""
    events = [e for m in members for e in m.events()]
    events.sort(key=lambda e: e["t"])
    return events


def stable_assignment(members, partitions: int):
    """If every given member currently owns partitions in one and the same
    generation, and together they own each of 0..partitions-1 exactly
    once: {name: partitions}. Otherwise None."""
    current = {m.name: m.current() for m in members}
    if any(c is None for c in current.values()):
        return None
    generations = {c[0] for c in current.values()}
    if len(generations) != 1 or None in generations:
        return None
    owned = [p for c in current.values() for p in c[2]]
    if sorted(owned) != list(range(partitions)):
        return None
    return {name: sorted(c[2]) for name, c in current.items()}


def wait_stable(members, partitions: int, timeout: float, what: str) -> dict[str, list[int]]:
    """Wait until `stable_assignment` holds; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        dead = [m.name for m in members if not m.running]
        assert not dead, f"members exited: {dead}\n" + "\n".join(
            f"--- {m.name} ---\n{m.log_tail()}" for m in members if m.name in dead
        )
        got = stable_assignment(members, partitions)
        if got:
            return got
        if time.monotonic() >= deadline:
            current = {m.name: m.current() for m in members}
            raise AssertionError(f"not {what} within {timeout:.0f}s; current: {current}")
        time.sleep(0.1)


# --- Cluster side: the offsets topic, committed offsets, coordinators ----------


def offsets_topic_ready(cluster, timeout: float = 60.0) -> None:
    """Have `__consumer_offsets` created (the first FindCoordinator does
    that) and wait until every one of its partitions has a leader and all
    its replicas in sync, so that groups start against a settled topic."""
    admin = admin_client(cluster.bootstrap)
    admin_results(admin.describe_consumer_groups(["fjord-interop-warm-up"]), timeout=timeout)
    wait_for_partitions(
        cluster,
        "__consumer_offsets",
        lambda s: len(s) == OFFSETS_PARTITIONS and fully_replicated(s),
        timeout,
        "offsets topic created and in sync",
    )


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """{partition: committed offset} of `group` from AdminClient
    list_consumer_group_offsets (-1001 where nothing is committed)."""
    admin = admin_client(bootstrap)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=WAIT)
    assert result.group_id == group
    out = {}
    for tp in result.topic_partitions:
        assert tp.error is None, f"{group} {tp}: {tp.error}"
        out[tp.partition] = tp.offset
    return out


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (as a signed 32-bit int)."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group: str, partitions: int = OFFSETS_PARTITIONS) -> int:
    """Kafka's Utils.abs(groupId.hashCode) % partitions."""
    return (java_string_hash(group) & 0x7FFFFFFF) % partitions


def acked_positions(acks) -> list[tuple[int, int]]:
    """(partition, offset) of every acknowledgement (chaos.Ack) that came
    with an offset. librdkafka acknowledges some messages without one: a
    batch it resent that the broker had already written (Kafka's
    DUPLICATE_SEQUENCE_NUMBER, which librdkafka counts as delivered with
    the offset unknown)."""
    return [(a.partition, a.offset) for a in acks if a.offset is not None]


def produced_values(bootstrap: str, topic: str, partitions: int, acks):
    """{(partition, offset): value} of every acknowledgement. Those without
    an offset are looked up by value (values are unique) in a read of the
    whole topic. Returns (that dict, acknowledgements not found in their
    partition, how many were looked up)."""
    from chaos import read_back

    produced = {(a.partition, a.offset): a.value.decode() for a in acks if a.offset is not None}
    unplaced = [a for a in acks if a.offset is None]
    lost = []
    if unplaced:
        where = {v: (p, o) for p, o, v in read_back(bootstrap, topic, list(range(partitions)))}
        for a in unplaced:
            found = where.get(a.value)
            if found is None or found[0] != a.partition:
                lost.append(a)
            else:
                produced[found] = a.value.decode()
    return produced, lost, len(unplaced)


# --- Checks -------------------------------------------------------------------


def owners_by_generation(events) -> dict[int, dict[str, set[int]]]:
    """{generation: {member id: partitions assigned in it}} from the
    assign events. An assignment whose generation could not be read is
    under generation None."""
    owners: dict = defaultdict(lambda: defaultdict(set))
    for e in events:
        if e["ev"] == "assign":
            owners[e["generation"]][e["member"] or e["who"]] |= set(e["partitions"])
    return {g: dict(m) for g, m in owners.items()}


def double_owners(events) -> list[tuple[int, int, list[str]]]:
    """(generation, partition, members) for every partition that two
    members were assigned in one generation."""
    out = []
    for generation, members in owners_by_generation(events).items():
        holders: dict[int, list[str]] = defaultdict(list)
        for member, parts in members.items():
            for p in parts:
                holders[p].append(member)
        out += [(generation, p, sorted(ms)) for p, ms in sorted(holders.items()) if len(ms) > 1]
    return out


@dataclass
class Run:
    """One member's ownership of one partition: from an assign to the
    revoke/lost (or the end of its events), and the offsets it processed."""

    who: str
    partition: int
    generation: int | None
    assigned_at: float
    offsets: list[int] = field(default_factory=list)
    # The last commit of this partition logged by anyone before the
    # assignment, and the highest offset anyone processed before it.
    committed_before: int = 0
    highest_read_before: int = -1


@dataclass
class ConsumptionResult:
    produced: int
    processed: int  # records processed, duplicates included
    missing: list[tuple[int, int]]  # produced, never processed
    wrong_value: list[tuple[int, int, str | None, str | None]]  # (p, o, produced, processed)
    reread_committed: list[Run]  # a run that started before the committed offset
    skipped_ahead: list[Run]  # a run that started past everything read before it
    run_gaps: list[tuple[Run, int, int]]  # (run, offset, next offset) not consecutive
    duplicates: int  # (p, o) processed more than once, counted once each
    runs: list[Run]

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.wrong_value
            or self.reread_committed
            or self.skipped_ahead
            or self.run_gaps
        )

    def summary(self, examples: int = 5) -> str:
        def some(items):
            items = list(items)
            return repr(items[:examples]) + (f" ... ({len(items)} in all)" if len(items) > examples else "")

        lines = [
            f"produced {self.produced}, processed {self.processed} "
            f"({self.duplicates} positions processed more than once), "
            f"{len(self.runs)} partition ownerships",
            f"produced but never processed: {len(self.missing)} {some(self.missing) if self.missing else ''}",
            f"processed with another value: {len(self.wrong_value)} "
            f"{some(self.wrong_value) if self.wrong_value else ''}",
            f"ownerships starting before the committed offset: {len(self.reread_committed)} "
            f"{some(self.reread_committed) if self.reread_committed else ''}",
            f"ownerships starting past every offset read: {len(self.skipped_ahead)} "
            f"{some(self.skipped_ahead) if self.skipped_ahead else ''}",
            f"gaps within an ownership: {len(self.run_gaps)} {some(self.run_gaps) if self.run_gaps else ''}",
        ]
        return "\n".join(lines)


def ownership_runs(events) -> list[Run]:
    """Every member's partition ownerships, with what they processed and
    what was committed and read before each began. `events` in time order."""
    open_runs: dict[tuple[str, int], Run] = {}
    runs: list[Run] = []
    committed: dict[int, int] = {}
    highest: dict[int, int] = {}
    for e in events:
        who, ev = e["who"], e["ev"]
        if ev == "assign":
            for p in e["partitions"]:
                run = Run(
                    who,
                    p,
                    e["generation"],
                    e["t"],
                    committed_before=committed.get(p, 0),
                    highest_read_before=highest.get(p, -1),
                )
                open_runs[(who, p)] = run
                runs.append(run)
        elif ev in ("revoke", "lost"):
            for p in e["partitions"]:
                open_runs.pop((who, p), None)
        elif ev == "closed":
            for key in [k for k in open_runs if k[0] == who]:
                del open_runs[key]
        elif ev == "records":
            for p, o, _ in e["records"]:
                run = open_runs.get((who, p))
                assert run is not None, f"{who} processed partition {p} without owning it: {e}"
                run.offsets.append(o)
                highest[p] = max(highest.get(p, -1), o)
        elif ev == "commit":
            for p, o in e["offsets"].items():
                committed[int(p)] = o
    return runs


def check_consumption(events, produced: dict[tuple[int, int], str | None]) -> ConsumptionResult:
    """Hold every member's events (time order) against what was produced,
    {(partition, offset): value}."""
    processed: dict[tuple[int, int], list[str | None]] = defaultdict(list)
    count = 0
    for e in events:
        if e["ev"] == "records":
            for p, o, v in e["records"]:
                processed[(p, o)].append(v)
                count += 1
    missing = sorted(pos for pos in produced if pos not in processed)
    wrong = sorted(
        (p, o, produced[(p, o)], v)
        for (p, o), values in processed.items()
        if (p, o) in produced
        for v in set(values)
        if v != produced[(p, o)]
    )
    runs = ownership_runs(events)
    reread, skipped, gaps = [], [], []
    for run in runs:
        if not run.offsets:
            continue
        first = run.offsets[0]
        if first < run.committed_before:
            reread.append(run)
        if first > run.highest_read_before + 1:
            skipped.append(run)
        for a, b in zip(run.offsets, run.offsets[1:]):
            if b != a + 1:
                gaps.append((run, a, b))
    duplicates = sum(1 for values in processed.values() if len(values) > 1)
    return ConsumptionResult(
        produced=len(produced),
        processed=count,
        missing=missing,
        wrong_value=wrong,
        reread_committed=reread,
        skipped_ahead=skipped,
        run_gaps=gaps,
        duplicates=duplicates,
        runs=runs,
    )


def processed_positions(events) -> set[tuple[int, int]]:
    return {(p, o) for e in events if e["ev"] == "records" for p, o, _ in e["records"]}


def wait_processed(members, positions, timeout: float, what: str) -> None:
    """Wait until every (partition, offset) of `positions` has been
    processed by some member."""
    want = set(positions)
    deadline = time.monotonic() + timeout
    while True:
        missing = want - processed_positions(all_events(members))
        if not missing:
            return
        if time.monotonic() >= deadline:
            by_partition: dict[int, list[int]] = defaultdict(list)
            for p, o in missing:
                by_partition[p].append(o)
            brief = {p: (min(o), max(o), len(o)) for p, o in sorted(by_partition.items())}
            raise AssertionError(
                f"not {what} within {timeout:.0f}s: {len(missing)} positions never processed, "
                f"per partition (first, last, count): {brief}; "
                f"current assignments: {({m.name: m.current() for m in members})}"
            )
        time.sleep(0.25)


def member_logs(members, lines: int = 30) -> str:
    return "\n".join(f"--- member {m.name} log {m.log_path} ---\n{m.log_tail(lines)}" for m in members)


MEMBERSHIP_EVENTS = ("start", "assign", "revoke", "lost", "commit_failed", "error", "closed")


def describe_events(events, kinds=MEMBERSHIP_EVENTS) -> str:
    """A readable timeline of the membership events (not the records)."""
    if not events:
        return "(no events)"
    t0 = events[0]["t"]
    lines = []
    for e in events:
        if e["ev"] in kinds:
            rest = {k: v for k, v in e.items() if k not in ("t", "ev", "who")}
            lines.append(f"  +{e['t'] - t0:7.2f}s {e['who']} {e['ev']} {rest}")
    return "\n".join(lines)

