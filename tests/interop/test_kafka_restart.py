"""A broker that dies (kill -9) or is stopped (SIGTERM) and comes back on the
same data dir and port keeps every acknowledged message, byte for byte, at
the offset it was acknowledged with, and carries on appending after them.

The producer is confluent-kafka (librdkafka) with acks=all; the messages are
read back with an assign()-only consumer.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from kafka_helpers import (
    RDKAFKA_LOG,
    WAIT,
    Record,
    admin_client,
    admin_ok,
    assert_contiguous,
    assert_reported_offsets,
    by_position,
    consume,
    produce,
)


def messages(prefix: str, count: int) -> list[tuple]:
    return [
        (b"%s-%d" % (prefix.encode(), i), b"%s value %d " % (prefix.encode(), i) + bytes([i % 256]) * (i % 300))
        for i in range(count)
    ]


def test_acknowledged_messages_survive_kill_9(kafka_cluster):
    """acks=all, flush, kill -9, restart: everything acknowledged is there,
    offsets contiguous; new messages go after them."""
    cluster = kafka_cluster(num_partitions=4)
    broker = cluster.brokers[0]
    topic = "survivor"
    sent = messages("a", 20_000)
    delivered, failed = produce(cluster.bootstrap, topic, sent, **{"acks": "all"})
    assert not failed, f"{len(failed)} deliveries failed, e.g. {failed[:3]}"
    assert len(delivered) == len(sent)

    broker.kill()
    broker.restart()

    got = consume(cluster.bootstrap, topic, [0, 1, 2, 3])
    assert_contiguous(got)
    assert by_position(got) == by_position(delivered)

    # The log carries on from where it was.
    more, failed = produce(cluster.bootstrap, topic, messages("b", 1000), **{"acks": "all"})
    assert not failed, failed
    got = consume(cluster.bootstrap, topic, [0, 1, 2, 3])
    assert_contiguous(got)
    assert by_position(got) == by_position(delivered + more)


def test_sigterm_exits_zero_and_keeps_data(kafka_cluster):
    """SIGTERM: a clean shutdown with exit code 0; after a restart the data
    is all there."""
    cluster = kafka_cluster(num_partitions=2)
    broker = cluster.brokers[0]
    delivered, failed = produce(cluster.bootstrap, "graceful", messages("g", 5000), **{"acks": "all"})
    assert not failed, failed
    assert broker.terminate() == 0
    broker.restart()
    got = consume(cluster.bootstrap, "graceful", [0, 1])
    assert_contiguous(got)
    assert by_position(got) == by_position(delivered)


def test_produce_through_kill_9_and_restart(kafka_cluster):
    """An idempotent acks=all producer keeps sending while the broker is
    killed and restarted. Afterwards every acknowledged message is stored
    exactly once at its acknowledged offset, nothing else is stored, and
    offsets are contiguous. librdkafka retries whatever was in flight; the
    broker must recognise a retried batch it already has (its producer
    state has to survive the crash)."""
    cluster = kafka_cluster()
    admin = admin_client(cluster.bootstrap)
    admin_ok(admin.create_topics([NewTopic("through", 3, 1)]))
    broker = cluster.brokers[0]

    delivered: list[Record] = []
    failed = []
    lock = threading.Lock()

    def reporter(err, msg):
        with lock:
            if err is not None:
                failed.append((msg.key(), err))
            else:
                delivered.append(Record(msg.partition(), msg.offset(), msg.key(), msg.value()))

    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            **RDKAFKA_LOG,
        }
    )
    sent: list[tuple[bytes, bytes]] = []
    stop = threading.Event()

    def send_until_stopped():
        i = 0
        while not stop.is_set() and i < 200_000:
            key, value = b"t-%d" % i, b"through %d " % i + b"q" * (i % 100)
            try:
                producer.produce("through", key=key, value=value, on_delivery=reporter)
            except BufferError:
                producer.poll(0.05)
                continue
            sent.append((key, value))
            i += 1
            if i % 100 == 0:
                producer.poll(0)
                time.sleep(0.005)  # a steady stream, not one burst

    sender = threading.Thread(target=send_until_stopped, daemon=True)
    sender.start()
    try:
        # Until the stream is acknowledged (the idempotent producer first gets
        # its producer id, which librdkafka may take a second or so to ask
        # for), and a second more of it.
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with lock:
                if delivered:
                    break
            time.sleep(0.05)
        time.sleep(1.0)
        with lock:
            acked_before_kill = len(delivered)
        broker.kill()
        time.sleep(0.5)
        broker.restart()  # waits out the old registration's session
        sent_before_restart = len(sent)
        time.sleep(1.0)
    finally:
        stop.set()
        sender.join(WAIT)
    # The stream really ran across the crash.
    assert acked_before_kill > 0
    assert sent_before_restart > acked_before_kill
    assert len(sent) > sent_before_restart
    left = producer.flush(60)
    assert left == 0, f"{left} messages undelivered 60 s after the restart"
    assert not failed, f"{len(failed)} deliveries failed, e.g. {failed[:3]}"
    assert len(delivered) == len(sent)
    assert len(sent) > 1000, f"only {len(sent)} messages sent"

    got = consume(cluster.bootstrap, "through", [0, 1, 2])
    assert_contiguous(got)
    stored = [(r.key, r.value) for r in got]
    duplicates = len(stored) - len(set(stored))
    assert duplicates == 0, f"{duplicates} messages stored twice"
    assert sorted(stored) == sorted(sent)
    assert_reported_offsets(got, delivered)
    # Idempotence keeps each partition in send order.
    order = {kv: i for i, kv in enumerate(sent)}
    for p in range(3):
        seq = [order[(r.key, r.value)] for r in got if r.partition == p]
        assert seq == sorted(seq), f"partition {p} out of send order"
