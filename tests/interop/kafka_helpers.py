"""Small helpers the Kafka interop tests share: producing with delivery
reports and consuming whole partitions with confluent-kafka (librdkafka),
waiting on admin futures, and the exactness checks.

A produced message is recorded from its delivery report, so it carries the
partition and offset the broker assigned; a consumed one from the fetch.
Comparing the two as {(partition, offset): (key, value, headers)} checks
the data byte for byte and the offsets at once.

For replicated clusters: the partition states (leader, leader epoch,
replicas, ISR, offline replicas) and the controller as one given broker
sees them (a raw Metadata request), bounded waits on them, and a raw
Produce request for talking to exactly one broker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

WAIT = 30.0  # seconds; generous bound for anything that should happen soon
# Which kcat runs (default: `kcat` on PATH).
KCAT = os.environ.get("FJORD_KCAT", "kcat")
# librdkafka logs through Python logging (pytest shows it with a failure)
# rather than straight to stderr, where a client that outlives its test's
# cluster would keep printing connection errors.
RDKAFKA_LOG = {"logger": logging.getLogger("librdkafka")}


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


def admin_results(futures: dict, timeout: float = WAIT) -> dict:
    """Wait for every admin future; map each key to its result or exception."""
    out = {}
    for key, future in futures.items():
        try:
            out[key] = future.result(timeout=timeout)
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out[key] = e
    return out


def admin_ok(futures: dict, timeout: float = WAIT) -> dict:
    """Like admin_results, but every operation must have succeeded."""
    results = admin_results(futures, timeout)
    failed = {k: v for k, v in results.items() if isinstance(v, Exception)}
    assert not failed, f"admin operations failed: {failed}"
    return results


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000, **RDKAFKA_LOG})


def topic_partition_counts(admin: AdminClient) -> dict[str, int]:
    """Every topic the broker lists (a request for all topics: no
    auto-creation) and its partition count."""
    metadata = admin.list_topics(timeout=WAIT)
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def produce(
    bootstrap: str,
    topic: str,
    messages,
    timeout: float = 60.0,
    **config,
) -> tuple[list[Record], list[tuple[bytes | None, KafkaError]]]:
    """Produce (key, value[, headers][, partition]) tuples with confluent-kafka;
    returns (delivered records, (key, error) of failed ones)."""
    delivered: list[Record] = []
    failed: list[tuple[bytes | None, KafkaError]] = []

    def reporter(headers):
        # Delivery reports carry no headers: remember the ones sent.
        def report(err, msg):
            if err is not None:
                failed.append((msg.key(), err))
            else:
                delivered.append(
                    Record(msg.partition(), msg.offset(), msg.key(), msg.value(), headers)
                )

        return report

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **RDKAFKA_LOG, **config})
    deadline = time.monotonic() + timeout
    for i, message in enumerate(messages):
        key, value, *rest = message
        headers = rest[0] if rest else None
        kwargs = {"partition": rest[1]} if len(rest) > 1 else {}
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=reporter(tuple(headers or ())),
                    **kwargs,
                )
                break
            except BufferError:  # local queue full: let deliveries drain
                assert time.monotonic() < deadline, "producer queue stayed full"
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    left = producer.flush(max(0.0, deadline - time.monotonic()))
    assert left == 0, f"{left} messages still undelivered after {timeout}s"
    return delivered, failed


def consume(
    bootstrap: str,
    topic: str,
    partitions: list[int],
    timeout: float = 60.0,
    **config,
) -> list[Record]:
    """Assign `partitions` at the beginning (no group, no commits) and read
    until every one of them reports its end. Any error other than the end
    of a partition fails."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # librdkafka wants a group id; assign() without commits needs no
            # group coordination from the broker.
            "group.id": "fjord-interop-assign",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            **RDKAFKA_LOG,
            **config,
        }
    )
    records: list[Record] = []
    at_end: set[int] = set()
    errors = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout
        while at_end != set(partitions):
            assert time.monotonic() < deadline, (
                f"only partitions {sorted(at_end)} of {partitions} reached their end "
                f"within {timeout}s ({len(records)} records read)"
            )
            for msg in consumer.consume(10000, 0.5):
                err = msg.error()
                if err is None:
                    records.append(
                        Record(
                            msg.partition(),
                            msg.offset(),
                            msg.key(),
                            msg.value(),
                            tuple(msg.headers() or ()),
                        )
                    )
                    # A partition that reached its end and then got more
                    # messages is not at its end any more.
                    at_end.discard(msg.partition())
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                else:
                    errors.append(err)
            assert not errors, f"consumer errors: {errors}"
    finally:
        consumer.close()
    return records


def by_position(records: list[Record]) -> dict[tuple[int, int], Record]:
    """{(partition, offset): record}; no position may appear twice."""
    positions = Counter((r.partition, r.offset) for r in records)
    twice = [p for p, n in positions.items() if n > 1]
    assert not twice, f"positions seen more than once: {twice[:10]}"
    return {(r.partition, r.offset): r for r in records}


def assert_reported_offsets(got: list[Record], delivered: list[Record]) -> None:
    """Every delivery report that names an offset names the record read
    there. librdkafka reports the messages of a request whose answer it lost
    (a timeout, a dropped connection) as delivered without an offset once a
    later request of the same idempotent producer succeeds (an implicit
    acknowledgement); callers check those by content."""
    positions = by_position(got)
    with_offset = [r for r in delivered if r.offset is not None]
    assert with_offset, "no delivery report carried an offset"
    wrong = [r for r in with_offset if positions.get((r.partition, r.offset)) != r]
    assert not wrong, f"{len(wrong)} reported offsets hold something else, e.g. {wrong[:3]}"


def assert_contiguous(records: list[Record]) -> dict[int, int]:
    """Per partition, the offsets are exactly 0..n-1 in the order read.
    Returns {partition: n}."""
    offsets: dict[int, list[int]] = {}
    for r in records:
        offsets.setdefault(r.partition, []).append(r.offset)
    for partition, got in offsets.items():
        assert got == list(range(len(got))), (
            f"partition {partition}: offsets are not 0..{len(got) - 1} in order; "
            f"first differences: {[(i, o) for i, o in enumerate(got) if i != o][:10]}"
        )
    return {p: len(o) for p, o in offsets.items()}


def stored_bytes(cluster, topic: str, partition: int = 0) -> int:
    """Size of the segment files of one partition on the brokers' disks (a
    directory `<topic>-<partition>/` of `*.log` segments, as DESIGN.md lays
    out). Batches are stored as the producer sent them, so a compressed
    batch stays small."""
    total = 0
    for broker in cluster.brokers:
        for path in broker.data_dir.rglob(f"{topic}-{partition}/*.log"):
            total += path.stat().st_size
    return total


def _read_frame(sock: socket.socket) -> bytes | None:
    """One Kafka frame (4-byte length + body), or None at end of stream."""
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (size,) = struct.unpack(">i", head)
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(min(size - len(body), 1 << 20))
        if not chunk:
            return None
        body += chunk
    return head + bytes(body)


class ProduceResponseDropper:
    """A loopback TCP proxy in front of one broker that, a few times, swallows
    the response to a Produce request and cuts that connection.

    The broker has appended the batch by then; the client never hears so
    and sends it again. An idempotent producer's retry carries the same
    producer id and sequence, so the broker must recognise it and not append
    it twice. Start the broker with `--advertised` set to `address`, so that
    clients come back through the proxy after the bootstrap, then set
    `target` to the broker's real address.
    """

    def __init__(self, drop_every: int = 3, max_drops: int = 3) -> None:
        self.target: tuple[str, int] | None = None
        self.drop_every = drop_every
        self.max_drops = max_drops
        self.dropped = 0
        self._produce_responses = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                assert self.target is not None, "proxy target not set"
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except (OSError, AssertionError):
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            produce_ids: set[int] = set()
            threading.Thread(
                target=self._requests, args=(client, server, produce_ids), daemon=True
            ).start()
            threading.Thread(
                target=self._responses, args=(client, server, produce_ids), daemon=True
            ).start()

    @staticmethod
    def _cut(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _requests(self, client, server, produce_ids: set[int]) -> None:
        try:
            while (frame := _read_frame(client)) is not None:
                api_key, _version, correlation = struct.unpack_from(">hhi", frame, 4)
                if api_key == 0:  # Produce
                    produce_ids.add(correlation)
                server.sendall(frame)
        except OSError:
            pass
        self._cut(client, server)

    def _responses(self, client, server, produce_ids: set[int]) -> None:
        try:
            while (frame := _read_frame(server)) is not None:
                (correlation,) = struct.unpack_from(">i", frame, 4)
                if correlation in produce_ids:
                    with self._lock:
                        self._produce_responses += 1
                        drop = (
                            self.dropped < self.max_drops
                            and self._produce_responses % self.drop_every == 0
                        )
                        if drop:
                            self.dropped += 1
                    if drop:
                        break
                client.sendall(frame)
        except OSError:
            pass
        self._cut(client, server)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            socks = list(self._sockets)
        self._cut(*socks)


# --- Cluster state: partition leaders, replicas, ISR, the controller ---------


@dataclass(frozen=True)
class PartitionState:
    """One partition as Metadata describes it."""

    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline: tuple[int, ...]
    error: int = 0

    @property
    def preferred(self) -> int:
        """The preferred leader: the first replica."""
        return self.replicas[0] if self.replicas else -1


@dataclass(frozen=True)
class ClusterMetadata:
    """What one broker answered to Metadata: live broker ids, the
    controller, and for each topic asked about its error code and
    {partition: PartitionState}."""

    answered_by: str
    brokers: frozenset[int]
    controller: int
    topic_errors: dict[str, int]
    topics: dict[str, dict[int, PartitionState]]


class _Reader:
    """Big-endian primitives off a bytes buffer, each length checked."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"Metadata response cut short at byte {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def string(self) -> str | None:
        size = self.take(">h")
        if size < 0:
            return None
        if self.pos + size > len(self.data):
            raise ValueError(f"Metadata response cut short at byte {self.pos}")
        text = self.data[self.pos : self.pos + size].decode()
        self.pos += size
        return text

    def int32s(self) -> tuple[int, ...]:
        count = self.take(">i")
        return tuple(self.take(">i") for _ in range(max(count, 0)))


def kafka_metadata(address: str, topics: list[str], timeout: float = 5.0) -> ClusterMetadata:
    """Ask one broker (a plain Metadata v7 request, no topic auto-creation)
    about `topics`: leaders with their epochs, replicas, ISR and offline
    replicas, which the Python clients do not all show, from exactly the
    broker asked (a client library would pick one itself)."""
    host, port = address.rsplit(":", 1)
    client_id = b"fjord-interop"
    body = struct.pack(">i", len(topics))
    for name in topics:
        body += struct.pack(">h", len(name.encode())) + name.encode()
    body += b"\x00"  # allow_auto_topic_creation = false
    request = struct.pack(">hhih", 3, 7, 1, len(client_id)) + client_id + body
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        frame = _read_frame(sock)
    if frame is None:
        raise ConnectionError(f"{address} closed the connection before answering Metadata")
    r = _Reader(frame, 4)
    correlation = r.take(">i")
    if correlation != 1:
        raise ValueError(f"Metadata answer with correlation id {correlation}")
    r.take(">i")  # throttle_time_ms
    brokers = set()
    for _ in range(r.take(">i")):
        brokers.add(r.take(">i"))
        r.string()  # host
        r.take(">i")  # port
        r.string()  # rack
    r.string()  # cluster_id
    controller = r.take(">i")
    errors: dict[str, int] = {}
    states: dict[str, dict[int, PartitionState]] = {}
    for _ in range(r.take(">i")):
        error = r.take(">h")
        name = r.string()
        r.take(">b")  # is_internal
        partitions = {}
        for _ in range(r.take(">i")):
            p_error, index, leader, epoch = r.take(">hiii")
            replicas, isr, offline = r.int32s(), r.int32s(), r.int32s()
            partitions[index] = PartitionState(leader, epoch, replicas, isr, offline, p_error)
        errors[name], states[name] = error, partitions
    return ClusterMetadata(address, frozenset(brokers), controller, errors, states)


def cluster_metadata(cluster, topics: list[str], timeout: float = 5.0) -> ClusterMetadata:
    """Metadata from the first reachable broker (running, not paused) of
    `cluster` that answers."""
    failures = []
    for broker in cluster.reachable:
        try:
            return kafka_metadata(broker.address, topics, timeout)
        except (OSError, ValueError) as e:
            failures.append(f"{broker.address}: {e!r}")
    raise ConnectionError(f"no reachable broker answered Metadata: {failures}")


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    """Call `condition()` until it returns something truthy, and return
    that. Connection errors count as "not yet". After `timeout` seconds,
    raise AssertionError naming `what` and the last value or error seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = condition()
            if result:
                return result
            last = result
        except (OSError, ValueError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"not {what} within {timeout:.0f}s; last seen: {last!r}")
        time.sleep(interval)


def partition_states(cluster, topic: str) -> dict[int, PartitionState]:
    """{partition: state} of `topic` from a reachable broker; empty while
    the topic is unknown."""
    md = cluster_metadata(cluster, [topic])
    if md.topic_errors.get(topic, -1) != 0:
        return {}
    return md.topics[topic]


def wait_for_partitions(cluster, topic: str, ready, timeout: float, what: str):
    """Poll `topic`'s partition states until `ready(states)` holds for the
    dict {partition: PartitionState}; returns the states."""

    def check():
        states = partition_states(cluster, topic)
        return states if states and ready(states) else False

    return wait_for(check, timeout, f"{topic}: {what}")


def fully_replicated(states: dict[int, PartitionState]) -> bool:
    """Every partition has a leader and every replica in its ISR."""
    return all(
        s.error == 0 and s.leader >= 0 and set(s.isr) == set(s.replicas)
        for s in states.values()
    )


def preferred_leaders(states: dict[int, PartitionState]) -> bool:
    """Every partition is led by its preferred (first) replica."""
    return all(s.error == 0 and s.leader == s.preferred for s in states.values())


def controller_id(cluster, timeout: float = WAIT) -> int:
    """The controller that a reachable broker names, once it names a
    reachable one."""
    live = {b.broker_id for b in cluster.reachable}
    return wait_for(
        lambda: (c := cluster_metadata(cluster, []).controller) in live and c,
        timeout,
        "a reachable controller",
    )


def high_watermarks(bootstrap: str, topic: str, partitions, timeout: float = 10.0) -> dict[int, int]:
    """{partition: high watermark}, asked of each partition's leader. A
    leader that just took over answers OFFSET_NOT_AVAILABLE until its high
    watermark has caught up (KIP-207), and one that just moved
    NOT_LEADER_OR_FOLLOWER: those are asked again until `timeout`."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "fjord-interop-watermarks", **RDKAFKA_LOG}
    )
    deadline = time.monotonic() + timeout
    retry = {
        KafkaError.OFFSET_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
    }

    def mark(p: int) -> int:
        while True:
            left = max(0.1, deadline - time.monotonic())
            try:
                return consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=left, cached=False)[1]
            except KafkaException as e:
                if e.args[0].code() not in retry or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    try:
        return {p: mark(p) for p in partitions}
    finally:
        consumer.close()


def create_replicated_topic(
    cluster, topic: str, partitions: int, replication: int = 3, timeout: float = WAIT, **config
) -> dict[int, PartitionState]:
    """Create `topic` (topic configs as keyword arguments with dots as
    underscores: min_insync_replicas=2) and wait until every partition has
    a leader and all its replicas in the ISR; returns the partition states."""
    admin = admin_client(",".join(b.address for b in cluster.reachable))
    configs = {key.replace("_", "."): str(value) for key, value in config.items()}
    admin_ok(admin.create_topics([NewTopic(topic, partitions, replication, config=configs)]))
    return wait_for_partitions(
        cluster,
        topic,
        lambda s: len(s) == partitions
        and all(len(p.replicas) == replication for p in s.values())
        and fully_replicated(s),
        timeout,
        f"{partitions} partitions with {replication} replicas all in sync",
    )


# --- A raw Produce request, for talking to exactly one broker ----------------


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as record batches v2 carry it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _varint(n: int) -> bytes:
    """Zig-zag varint, as records v2 encode their fields."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def record_batch(values: list[bytes], timestamp_ms: int | None = None) -> bytes:
    """An uncompressed record batch (magic 2) of keyless records, without
    producer id (not idempotent)."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    records = b""
    for i, value in enumerate(values):
        body = b"\x00" + _varint(0) + _varint(i) + _varint(-1) + _varint(len(value)) + value + _varint(0)
        records += _varint(len(body)) + body
    after_crc = struct.pack(
        ">hiqqqhii", 0, len(values) - 1, ts, ts, -1, -1, -1, len(values)
    ) + records
    after_length = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def produce_request(
    correlation: int, topic: str, partition: int, values: list[bytes], acks: int = -1, timeout_ms: int = 5000
) -> bytes:
    """A whole Produce v3 frame (length prefix included) carrying one batch."""
    client_id = b"fjord-interop"
    batch = record_batch(values)
    name = topic.encode()
    body = (
        struct.pack(">hhi", -1, acks, timeout_ms)  # no transactional id
        + struct.pack(">ih", 1, len(name))
        + name
        + struct.pack(">iii", 1, partition, len(batch))
        + batch
    )
    request = struct.pack(">hhih", 0, 3, correlation, len(client_id)) + client_id + body
    return struct.pack(">i", len(request)) + request


def read_produce_response(sock: socket.socket) -> tuple[int, int, int] | None:
    """(correlation id, error code, base offset) of the next Produce v3
    response on `sock` (one topic, one partition), or None if the broker
    closed the connection first."""
    frame = _read_frame(sock)
    if frame is None:
        return None
    r = _Reader(frame, 4)
    correlation = r.take(">i")
    assert r.take(">i") == 1, "one topic in the response"
    r.string()
    assert r.take(">i") == 1, "one partition in the response"
    _partition, error, base_offset = r.take(">ihq")
    return correlation, error, base_offset
