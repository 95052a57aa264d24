"""Small helpers the Kafka interop tests share: producing with delivery
reports and consuming whole partitions with confluent-kafka (librdkafka),
waiting on admin futures, and the exactness checks.

A produced message is recorded from its delivery report, so it carries the
partition and offset the broker assigned; a consumed one from the fetch.
Comparing the two as {(partition, offset): (key, value, headers)} checks
the data byte for byte and the offsets at once.
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

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

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
