"""A history of what a producer was told, and a checker that holds it
against what the cluster returns afterwards.

The checker is pure: it takes the acknowledged (partition, offset, value)
triples and the (partition, offset, value) triples read back, and says

- which acknowledged messages were not read back at their acknowledged
  position (lost outright, or found only somewhere else);
- which positions carry two different values (two acknowledgements for
  one offset, or an acknowledgement and a read that disagree: a leader
  acknowledged a write that a later leader overwrote);
- which values are stored at more than one position (duplicates), and
  which were acknowledged at more than one;
- which offsets are missing, from the log start to the last one read;
- which values were read but never sent.

Values must be unique per message (the workload sends f"{n}"), so a value
names its message.

The recorder (History) is thread-safe; Workload is a confluent-kafka
producer thread that writes unique values continuously and fills a
History from its delivery reports.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer
from kafka_helpers import RDKAFKA_LOG, consume, high_watermarks, wait_for


@dataclass(frozen=True)
class Ack:
    """A delivery report without error: where the broker said the value is."""

    partition: int
    # None for an implicit acknowledgement: librdkafka reports the messages
    # of a request whose answer it lost (a timeout, a dropped connection) as
    # delivered, without an offset, once a later request of the same
    # idempotent producer succeeds on that partition. Such a message must be
    # stored exactly once in its partition, at whatever offset.
    offset: int | None
    value: bytes
    at: float = 0.0  # time.monotonic() when the report arrived


@dataclass(frozen=True)
class Failure:
    value: bytes
    partition: int
    error: str  # the error's name, e.g. NOT_ENOUGH_REPLICAS
    at: float = 0.0


class History:
    """Everything one workload sent and was told, plus the faults the test
    injected, with monotonic timestamps. Safe to fill from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[bytes] = []
        self.acks: list[Ack] = []
        self.failures: list[Failure] = []
        self.events: list[tuple[float, str]] = []

    def record_sent(self, value: bytes) -> None:
        with self._lock:
            self.sent.append(value)

    def record_ack(self, partition: int, offset: int, value: bytes) -> None:
        with self._lock:
            self.acks.append(Ack(partition, offset, value, time.monotonic()))

    def record_failure(self, value: bytes, partition: int, error: str) -> None:
        with self._lock:
            self.failures.append(Failure(value, partition, error, time.monotonic()))

    def note(self, text: str) -> float:
        """Record a test action (a kill, a pause, ...); returns its time."""
        now = time.monotonic()
        with self._lock:
            self.events.append((now, text))
        return now

    def snapshot(self) -> tuple[list[bytes], list[Ack], list[Failure]]:
        with self._lock:
            return list(self.sent), list(self.acks), list(self.failures)

    def acks_after(self, moment: float, partition: int | None = None) -> list[Ack]:
        with self._lock:
            return [
                a
                for a in self.acks
                if a.at > moment and (partition is None or a.partition == partition)
            ]

    def longest_ack_gap(self, start: float, end: float) -> float:
        """The longest time within [start, end] without any acknowledgement."""
        with self._lock:
            times = sorted(a.at for a in self.acks if start <= a.at <= end)
        points = [start, *times, end]
        return max(b - a for a, b in zip(points, points[1:]))

    def timeline(self) -> str:
        """The injected faults, relative to the first one."""
        with self._lock:
            events = list(self.events)
        if not events:
            return "(no events)"
        t0 = events[0][0]
        return "\n".join(f"  +{t - t0:7.2f}s {text}" for t, text in events)


@dataclass
class CheckResult:
    acked: int
    read: int
    # Acknowledged but not at the acknowledged position: value not read at
    # all (lost), or read only at other positions (moved: {ack: positions}).
    lost: list[Ack] = field(default_factory=list)
    moved: dict[Ack, list[tuple[int, int]]] = field(default_factory=dict)
    # Positions with more than one value: {(p, o): {value: sources}}, a
    # source being "ack" or "read".
    conflicts: dict[tuple[int, int], dict[bytes, set[str]]] = field(default_factory=dict)
    # Values stored at more than one position: {value: positions}.
    duplicates: dict[bytes, list[tuple[int, int]]] = field(default_factory=dict)
    # Duplicates whose copies the producer wrote under different epochs of
    # its producer id: librdkafka bumps the epoch of an idempotent producer
    # (KIP-360) after a sequence gap and renumbers every message it has not
    # seen acknowledged, including ones a timed-out request had stored, so
    # these are the client's doing, with any Kafka broker. {value: [(p, o,
    # producer id, epoch, sequence)]}. Copies under one epoch stay in
    # `duplicates`: the broker stored a retry twice.
    renumbered: dict[bytes, list[tuple[int, int, int, int, int]]] = field(default_factory=dict)
    # Values acknowledged more than once, at different positions.
    double_acks: dict[bytes, list[tuple[int, int]]] = field(default_factory=dict)
    # Per partition, offsets missing between the first and last read.
    gaps: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    # Read, never sent (only when the sent values are given).
    unknown: list[tuple[int, int, bytes]] = field(default_factory=list)
    # Read, sent, never acknowledged: allowed (the acknowledgement may have
    # been lost, or the send failed after the write); counted only.
    unacked_stored: int = 0

    def assert_clean(self, report: str) -> None:
        """Fails, with `report`, unless everything acknowledged was read back
        once at its position and nothing else is odd."""
        assert self.not_read == 0, f"acknowledged messages not read back:\n{report}"
        assert not self.conflicts, f"offsets with two values:\n{report}"
        assert not self.duplicates, f"values stored more than once:\n{report}"
        assert not self.double_acks, f"values acknowledged twice:\n{report}"
        assert not self.gaps, f"offset gaps:\n{report}"
        assert not self.unknown, f"values never sent:\n{report}"

    def classify_duplicates(self, lookup) -> None:
        """Moves to `renumbered` each duplicate whose copies carry one producer
        id and pairwise different producer epochs, as `lookup(partition,
        offset)` reads them from the stored batches ((producer id, epoch,
        sequence) or None when unknown)."""
        for value, positions in list(self.duplicates.items()):
            stamps = [lookup(p, o) for p, o in positions]
            if any(s is None for s in stamps):
                continue
            pids = {s[0] for s in stamps}
            epochs = [s[1] for s in stamps]
            if len(pids) == 1 and next(iter(pids)) >= 0 and len(set(epochs)) == len(epochs):
                self.renumbered[value] = [(p, o, *s) for (p, o), s in zip(positions, stamps)]
                del self.duplicates[value]

    @property
    def not_read(self) -> int:
        """Acknowledged messages missing from their acknowledged position."""
        return len(self.lost) + len(self.moved)

    def summary(self, examples: int = 5) -> str:
        def some(items) -> str:
            items = list(items)
            shown = ", ".join(repr(i) for i in items[:examples])
            return shown + (f", ... ({len(items)} in all)" if len(items) > examples else "")

        lines = [
            f"acknowledged {self.acked}, read back {self.read}, "
            f"stored but never acknowledged {self.unacked_stored}",
            f"acknowledged but not read at their offset: {self.not_read} "
            f"(lost {len(self.lost)}, found elsewhere {len(self.moved)})",
            f"offsets with two values: {len(self.conflicts)}",
            f"values stored more than once: {len(self.duplicates)}",
            f"values stored again under a newer producer epoch: {len(self.renumbered)}",
            f"values acknowledged more than once: {len(self.double_acks)}",
            f"offset gaps: {sum(len(g) for g in self.gaps.values())}",
            f"values read but never sent: {len(self.unknown)}",
        ]
        if self.lost:
            lines.append(f"  lost: {some((a.partition, a.offset, a.value) for a in self.lost)}")
        if self.moved:
            lines.append(
                "  found elsewhere: "
                + some(((a.partition, a.offset, a.value), where) for a, where in self.moved.items())
            )
        if self.conflicts:
            lines.append(
                "  two values: "
                + some(
                    (pos, {v: sorted(s) for v, s in values.items()})
                    for pos, values in sorted(self.conflicts.items())
                )
            )
        if self.duplicates:
            lines.append(f"  duplicates: {some(sorted(self.duplicates.items()))}")
        if self.renumbered:
            lines.append(
                "  stored again after an epoch bump (partition, offset, producer id, epoch, "
                f"sequence): {some(sorted(self.renumbered.items()))}"
            )
        if self.double_acks:
            lines.append(f"  acknowledged twice: {some(sorted(self.double_acks.items()))}")
        if self.gaps:
            lines.append(f"  gaps (first, last missing): {some(sorted(self.gaps.items()))}")
        if self.unknown:
            lines.append(f"  never sent: {some(self.unknown)}")
        return "\n".join(lines)


def check(acks, read, sent=None, first_offset: int | None = 0) -> CheckResult:
    """Compare acknowledged (partition, offset, value) against read-back
    (partition, offset, value). `acks` may hold Ack objects or triples;
    `sent`, if given, is every value the producer handed over. Gaps are
    counted from `first_offset` (the log start; None: from the first
    offset read)."""
    acks = [a if isinstance(a, Ack) else Ack(*a) for a in acks]
    read = [tuple(r) for r in read]
    result = CheckResult(acked=len(acks), read=len(read))

    # Who says what is at each position.
    claims: dict[tuple[int, int], dict[bytes, set[str]]] = defaultdict(lambda: defaultdict(set))
    for a in acks:
        if a.offset is not None:
            claims[(a.partition, a.offset)][a.value].add("ack")
    for p, o, v in read:
        claims[(p, o)][v].add("read")
    result.conflicts = {
        pos: {v: set(s) for v, s in values.items()}
        for pos, values in claims.items()
        if len(values) > 1
    }

    stored_at: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    read_at: dict[tuple[int, int], list[bytes]] = defaultdict(list)
    for p, o, v in read:
        stored_at[v].append((p, o))
        read_at[(p, o)].append(v)
    result.duplicates = {
        v: sorted(positions) for v, positions in stored_at.items() if len(set(positions)) > 1
    }

    acked_at: dict[bytes, set[tuple[int, int]]] = defaultdict(set)
    for a in acks:
        if a.offset is None:
            # Implicitly acknowledged: anywhere in its own partition will do.
            if not any(p == a.partition for p, _ in stored_at.get(a.value, ())):
                if a.value in stored_at:
                    result.moved[a] = sorted(set(stored_at[a.value]))
                else:
                    result.lost.append(a)
            acked_at.setdefault(a.value, set())
            continue
        acked_at[a.value].add((a.partition, a.offset))
        if a.value not in read_at.get((a.partition, a.offset), ()):
            if a.value in stored_at:
                result.moved[a] = sorted(set(stored_at[a.value]))
            else:
                result.lost.append(a)
    result.double_acks = {v: sorted(ps) for v, ps in acked_at.items() if len(ps) > 1}
    result.unacked_stored = sum(1 for v in stored_at if v not in acked_at)

    offsets: dict[int, set[int]] = defaultdict(set)
    for p, o, _ in read:
        offsets[p].add(o)
    for p, seen in offsets.items():
        missing, ordered = [], sorted(seen)
        if first_offset is not None and ordered[0] > first_offset:
            missing.append((first_offset, ordered[0] - 1))
        for before, after in zip(ordered, ordered[1:]):
            if after > before + 1:
                missing.append((before + 1, after - 1))
        if missing:
            result.gaps[p] = missing

    if sent is not None:
        sent = set(sent)
        result.unknown = [(p, o, v) for p, o, v in read if v not in sent]
    return result


def apply_broker_fault(rng, broker, fault: str, name: str, history, short_max: float, long_range) -> None:
    """One chaos fault on a broker, noted in `history` under `name`:
    "kill" (kill -9, restart after 0-3 s), "pause" (SIGSTOP for a random
    time up to `short_max` s, or, half of the time, within `long_range`
    (low, high) s, then SIGCONT) or "terminate" (SIGTERM, which must exit
    0, then restart)."""
    if fault == "kill":
        down = rng.uniform(0.0, 3.0)
        history.note(f"{name}: kill -9, restart after {down:.1f}s")
        broker.kill()
        time.sleep(down)
        broker.restart()
        history.note(f"{name}: restarted")
    elif fault == "pause":
        frozen = rng.choice([rng.uniform(0.5, short_max), rng.uniform(*long_range)])
        history.note(f"{name}: SIGSTOP for {frozen:.1f}s")
        broker.pause()
        time.sleep(frozen)
        broker.resume()
        history.note(f"{name}: SIGCONT")
    else:
        history.note(f"{name}: SIGTERM")
        code = broker.terminate(timeout=30)
        assert code == 0, f"{name}: exit code {code} after SIGTERM"
        broker.restart()
        history.note(f"{name}: restarted")


def read_back(bootstrap: str, topic: str, partitions: list[int], timeout: float = 90.0):
    """Every (partition, offset, value) of `partitions`, from the start to
    the high watermark, read with an assign()-only consumer."""
    return [(r.partition, r.offset, r.value) for r in consume(bootstrap, topic, partitions, timeout)]


def read_everything(cluster, topic: str, partitions: int, acks, timeout: float = 30.0):
    """Read back all of `topic` from the reachable brokers, once every
    partition's high watermark has passed the last acknowledged offset
    (a leader elected a moment ago may not have advanced it yet; after
    `timeout` seconds the read goes ahead and the checker shows what is
    missing). Returns (records read, the last high watermarks seen)."""
    bootstrap = ",".join(b.address for b in cluster.reachable)
    want = {p: 0 for p in range(partitions)}
    for a in acks:  # Ack or Record objects, or (partition, offset, value)
        p, o = (a.partition, a.offset) if hasattr(a, "partition") else (a[0], a[1])
        if o is not None:
            want[p] = max(want[p], o + 1)
    deadline = time.monotonic() + timeout
    marks: dict[int, int] = {}
    while time.monotonic() < deadline:
        try:
            marks = high_watermarks(bootstrap, topic, list(want))
        except Exception:  # noqa: BLE001 - a leader moving; try again
            marks = {}
        if marks and all(marks[p] >= n for p, n in want.items()):
            break
        time.sleep(0.5)
    return read_back(bootstrap, topic, list(range(partitions))), marks


class Workload:
    """A confluent-kafka producer (acks=all, idempotent) on a thread of
    its own, sending the unique values b"0", b"1", ... at a steady pace and
    recording every delivery report in `history`. With `partitions` the
    values go round-robin to partitions 0..partitions-1 (so every partition
    gets a steady stream); without, the client's partitioner chooses."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        history: History,
        partitions: int | None = None,
        per_second: int = 800,
        max_messages: int = 400_000,
        **config,
    ) -> None:
        self.topic = topic
        self.history = history
        self.partitions = partitions
        self.per_second = per_second
        self.max_messages = max_messages
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                # Nothing should give up on its own during a test: a
                # delivery report with an error then means the broker
                # answered with a non-retriable error.
                "message.timeout.ms": 300_000,
                # How long the broker may hold an acks=all produce.
                "request.timeout.ms": 5000,
                # librdkafka gives up on a request in flight (and on that
                # connection, which makes it look the leader up again)
                # only after the first message's timeout, capped by this:
                # a request stuck at a paused broker is retried elsewhere
                # after 6 s rather than 60.
                "socket.timeout.ms": 6000,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
                **RDKAFKA_LOG,
                # FJORD_CHAOS_DEBUG=eos,msg shows librdkafka's idempotence
                # decisions (epoch bumps, retries) in a failing test's log.
                **({"debug": os.environ["FJORD_CHAOS_DEBUG"]} if os.environ.get("FJORD_CHAOS_DEBUG") else {}),
                **config,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"workload-{topic}", daemon=True)
        self.error: BaseException | None = None

    def _report(self, err, msg) -> None:
        if err is not None:
            self.history.record_failure(msg.value(), msg.partition(), err.name())
        else:
            self.history.record_ack(msg.partition(), msg.offset(), msg.value())

    def _run(self) -> None:
        burst = max(1, self.per_second // 50)
        n = 0
        try:
            while not self._stop.is_set() and n < self.max_messages:
                next_burst = time.monotonic() + 0.02
                for _ in range(burst):
                    value = str(n).encode()
                    kwargs = {} if self.partitions is None else {"partition": n % self.partitions}
                    try:
                        self.producer.produce(
                            self.topic, value=value, on_delivery=self._report, **kwargs
                        )
                    except BufferError:  # local queue full: wait for reports
                        break
                    self.history.record_sent(value)
                    n += 1
                # poll() returns early once it has served a report: serve
                # reports until the next burst is due.
                for _ in range(100):
                    rest = next_burst - time.monotonic()
                    if rest <= 0:
                        break
                    self.producer.poll(rest)
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def start(self) -> Workload:
        self._thread.start()
        return self

    def stop(self, flush_timeout: float = 60.0) -> int:
        """Stop sending, wait for every outstanding delivery report (at
        most `flush_timeout` seconds); returns how many are still
        outstanding (0 when all reports arrived)."""
        self._stop.set()
        self._thread.join(10.0)
        assert not self._thread.is_alive(), "workload thread did not stop"
        if self.error is not None:
            raise self.error
        return self.producer.flush(flush_timeout)


def wait_acks(history: History, after: float, partitions, count: int, timeout: float, what: str):
    """Wait until each of `partitions` has `count` acknowledgements that
    arrived after `after`."""
    wait_for(
        lambda: all(len(history.acks_after(after, p)) >= count for p in partitions),
        timeout,
        f"{count} acknowledgements on each of partitions {sorted(partitions)} {what}",
    )


def finish(cluster, workload: Workload, history: History, topic: str, partitions: int):
    """Stop the workload, wait for every delivery report, read the whole
    topic back and check it against the history; returns (check result,
    records read, failed deliveries). Everything acknowledged must be
    where it was acknowledged, exactly once, and nothing else may be odd."""
    left = workload.stop(flush_timeout=60)
    assert left == 0, f"{left} messages without a delivery report 60 s after the last send"
    sent, acks, failures = history.snapshot()
    read, marks = read_everything(cluster, topic, partitions, acks)
    result = check(acks, read, sent=sent)
    result.classify_duplicates(stored_stamps(cluster, topic))
    report = f"{result.summary()}\nhigh watermarks {marks}\nevents:\n{history.timeline()}"
    print(report)
    result.assert_clean(report)
    return result, read, failures


# Offsets of the fields of a v2 record batch header that say who wrote it.
_BATCH_LENGTH_END = 12
_PRODUCER_AT = 43  # producer id (i64), epoch (i16), base sequence (i32)


def stored_stamps(cluster, topic: str):
    """A lookup (partition, offset) -> (producer id, producer epoch, sequence)
    of the record stored there, read from the segment files of every broker
    of `cluster` (the first replica that has the offset answers); None for
    an offset no replica has."""
    cache: dict[int, dict[int, tuple[int, int, int]]] = {}

    def load(partition: int) -> dict[int, tuple[int, int, int]]:
        stamps: dict[int, tuple[int, int, int]] = {}
        for broker in cluster.brokers:
            segments = sorted(Path(broker.data_dir).glob(f"**/{topic}-{partition}/*.log"))
            for segment in segments:
                data = segment.read_bytes()
                at = 0
                while at + 61 <= len(data):
                    base, length = struct.unpack_from(">qi", data, at)
                    if length <= 0 or at + _BATCH_LENGTH_END + length > len(data):
                        break
                    last_delta = struct.unpack_from(">i", data, at + 23)[0]
                    pid, epoch, seq = struct.unpack_from(">qhi", data, at + _PRODUCER_AT)
                    for delta in range(last_delta + 1):
                        stamps.setdefault(base + delta, (pid, epoch, seq + delta if seq >= 0 else -1))
                    at += _BATCH_LENGTH_END + length
        return stamps

    def lookup(partition: int, offset: int):
        if partition not in cache:
            cache[partition] = load(partition)
        return cache[partition].get(offset)

    return lookup
