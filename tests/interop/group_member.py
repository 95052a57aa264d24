"""One consumer-group member in a process of its own, so that a test can
kill it with kill -9. Run by test_kafka_groups.py and test_chaos_groups.py:

    python group_member.py --bootstrap B --group G --topic T --out EVENTS

It subscribes with confluent-kafka (classic protocol, eager assignment,
no auto-commit) and appends one JSON object per line to EVENTS, each with
`t` (time.monotonic(), which is system-wide on Linux, so the lines of
several members order against each other and against the test) and `ev`:

- "start": {pid}
- "assign": {member, generation, partitions}: from on_assign; the
  generation is read from consumer_group_metadata() there;
- "revoke" / "lost": {member, generation, partitions}: from on_revoke /
  on_lost (partitions lost are not committed: the member is no longer in
  that generation);
- "records": {records: [[partition, offset, value], ...]}: what one
  batch processed. A record is processed once it is in this file;
- "commit": {offsets: {partition: next offset}}: a synchronous commit the
  broker accepted (every partition without error);
- "commit_failed": {offsets, error};
- "error": {error}: a consumer error other than a partition's end;
- "closed": after a clean close (SIGTERM or --max-seconds).

Processing is "at least once": a batch is written to the file first, then
its offsets are committed synchronously (after every batch, or at most
every --commit-interval-ms), and in on_revoke whatever was processed and
not yet committed, before the partitions move on. A member
killed with kill -9 may leave processed records uncommitted; the next
owner reads them again from the committed offset.

Each line is one write(2) on an O_APPEND file: a line is either whole or
absent after a kill -9.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


def generation_and_member(consumer: Consumer) -> tuple[int, str]:
    """The generation and member id of the consumer's current group
    membership. consumer_group_metadata() is librdkafka's serialised
    rd_kafka_consumer_group_metadata_t: b"CGMDv2:", the generation id
    (int32, host byte order), then the NUL-terminated group id and member
    id, then the group instance id."""
    raw = bytes(consumer.consumer_group_metadata())
    magic = b"CGMDv2:"
    if not raw.startswith(magic):
        raise ValueError(f"unknown consumer group metadata format: {raw[:16]!r}")
    (generation,) = struct.unpack_from("=i", raw, len(magic))
    rest = raw[len(magic) + 4 :]
    _group, rest = rest.split(b"\x00", 1)
    member, _ = rest.split(b"\x00", 1)
    return generation, member.decode()


class Events:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, ev: str, **fields) -> None:
        line = json.dumps({"t": time.monotonic(), "ev": ev, **fields}, separators=(",", ":"))
        os.write(self.fd, (line + "\n").encode())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--client-id", default="group-member")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=1000)
    # librdkafka sends max.poll.interval.ms as the JoinGroup rebalance
    # timeout: how long a rebalance waits for members to rejoin.
    parser.add_argument("--max-poll-interval-ms", type=int, default=30000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="processing time per batch")
    # 0: commit after every batch. More: commit at most that often, so that
    # a kill -9 leaves processed records uncommitted.
    parser.add_argument("--commit-interval-ms", type=float, default=0.0)
    args = parser.parse_args()

    events = Events(args.out)
    events.write("start", pid=os.getpid())
    stopping = False

    def on_sigterm(_signo, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_sigterm)

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "client.id": args.client_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": args.session_timeout_ms,
            "heartbeat.interval.ms": args.heartbeat_interval_ms,
            "max.poll.interval.ms": args.max_poll_interval_ms,
            "partition.assignment.strategy": "range",
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "socket.timeout.ms": 6000,
            "topic.metadata.refresh.interval.ms": 5000,
        }
    )
    owned: set[int] = set()
    # Bumped by every rebalance callback.
    changes = [0]
    # Processed, not yet committed: {partition: next offset}.
    pending: dict[int, int] = {}

    def commit(offsets: dict[int, int]) -> None:
        """Commit synchronously; what the broker accepted leaves `pending`
        (a failed partition stays there, for the next commit)."""
        if not offsets:
            return
        tps = [TopicPartition(args.topic, p, o) for p, o in sorted(offsets.items())]
        try:
            result = consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as e:
            events.write("commit_failed", offsets=offsets, error=str(e.args[0]))
            return
        bad = {tp.partition: str(tp.error) for tp in result or [] if tp.error is not None}
        good = {p: o for p, o in offsets.items() if p not in bad}
        if bad:
            events.write("commit_failed", offsets={p: offsets[p] for p in bad}, error=str(bad))
        if good:
            events.write("commit", offsets=good)
        for p, o in good.items():
            if pending.get(p) == o:
                del pending[p]

    def membership() -> dict:
        try:
            generation, member = generation_and_member(consumer)
        except (ValueError, KafkaException) as e:
            return {"generation": None, "member": None, "metadata_error": str(e)}
        return {"generation": generation, "member": member}

    def on_assign(c, partitions):
        changes[0] += 1
        owned.update(tp.partition for tp in partitions)
        events.write("assign", partitions=sorted(tp.partition for tp in partitions), **membership())

    def on_revoke(c, partitions):
        changes[0] += 1
        revoked = {tp.partition for tp in partitions}
        # Still a member of the generation: hand over what was processed.
        commit({p: o for p, o in pending.items() if p in revoked})
        for p in revoked:
            pending.pop(p, None)
        owned.difference_update(revoked)
        events.write("revoke", partitions=sorted(revoked), **membership())

    def on_lost(c, partitions):
        changes[0] += 1
        lost = {tp.partition for tp in partitions}
        for p in lost:
            pending.pop(p, None)
        owned.difference_update(lost)
        events.write("lost", partitions=sorted(lost), **membership())

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    deadline = time.monotonic() + args.max_seconds
    next_commit = 0.0
    try:
        while not stopping and time.monotonic() < deadline:
            # A batch: up to --batch messages polled one at a time, for at
            # most 200 ms. The rebalance callbacks run inside poll(); one
            # that runs mid-batch drops the messages polled before it
            # (unprocessed: they come again from the committed offset).
            batch = []
            seen_changes = changes[0]
            batch_end = time.monotonic() + 0.2
            while len(batch) < args.batch and not stopping:
                left = batch_end - time.monotonic()
                if left <= 0:
                    break
                msg = consumer.poll(left)
                if changes[0] != seen_changes:
                    batch, seen_changes = [], changes[0]
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        events.write("error", error=str(err))
                    continue
                if msg.partition() not in owned:
                    continue
                value = msg.value()
                batch.append([msg.partition(), msg.offset(), value.decode() if value else None])
            if batch:
                if args.delay_ms:
                    time.sleep(args.delay_ms / 1000)
                events.write("records", records=batch)
                for p, o, _ in batch:
                    pending[p] = max(pending.get(p, 0), o + 1)
            # Also retries a commit that failed (a coordinator moving, say).
            if pending and time.monotonic() >= next_commit:
                commit({p: o for p, o in pending.items() if p in owned})
                next_commit = time.monotonic() + args.commit_interval_ms / 1000
    finally:
        # Unsubscribing first runs on_revoke, which commits what is pending.
        consumer.close()
        events.write("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
