"""Three brokers, replication factor 1: every broker leads partitions of its
own, and clients that know only one bootstrap broker follow the leaders that
Metadata names, producing to and consuming from all three.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter

import pytest
from confluent_kafka.admin import NewTopic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka_helpers import (
    KCAT,
    WAIT,
    admin_client,
    admin_ok,
    assert_contiguous,
    by_position,
    consume,
    produce,
)

PARTITIONS = 9


def leaders(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]]:
    """{partition: (leader, replicas)} from Metadata, once every partition of
    the topic has a leader."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + WAIT
    while True:
        t = admin.list_topics(timeout=WAIT).topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == PARTITIONS:
            if all(p.leader >= 0 for p in t.partitions.values()):
                return {p.id: (p.leader, list(p.replicas)) for p in t.partitions.values()}
        if time.monotonic() > deadline:
            pytest.fail(f"{topic}: not every partition got a leader within {WAIT}s: {t and t.partitions}")
        time.sleep(0.1)


def test_three_brokers_each_lead_their_partitions(kafka_cluster):
    """The controller spreads a 9-partition topic over all three brokers;
    each partition's log lives on its leader only; a producer and consumer
    bootstrapped from broker 1 alone reach all of them."""
    cluster = kafka_cluster(brokers=3)
    first = cluster.brokers[0].address
    admin = admin_client(first)
    metadata = admin.list_topics(timeout=WAIT)
    assert sorted(metadata.brokers) == [1, 2, 3]
    assert metadata.controller_id in (1, 2, 3)
    assert {b.port for b in metadata.brokers.values()} == {b.port for b in cluster.brokers}

    topic = "spread"
    admin_ok(admin.create_topics([NewTopic(topic, PARTITIONS, 1)]))
    layout = leaders(first, topic)
    for p, (leader, replicas) in layout.items():
        assert replicas == [leader], f"partition {p}: replicas {replicas}, leader {leader}"
    per_broker = Counter(leader for leader, _ in layout.values())
    assert set(per_broker) == {1, 2, 3}, f"leaders per broker: {dict(per_broker)}"
    # Every broker answers Metadata with the same layout.
    for b in cluster.brokers:
        assert leaders(b.address, topic) == layout, f"broker {b.broker_id} disagrees"

    sent = [(b"key-%d" % i, b"value %d " % i + bytes([i % 256]) * (i % 64)) for i in range(30_000)]
    delivered, failed = produce(first, topic, sent, **{"acks": "all"})
    assert not failed, f"{len(failed)} deliveries failed, e.g. {failed[:3]}"
    assert {r.partition for r in delivered} == set(range(PARTITIONS))

    got = consume(first, topic, list(range(PARTITIONS)))
    assert_contiguous(got)
    assert by_position(got) == by_position(delivered)
    assert Counter((r.key, r.value) for r in got) == Counter(sent)

    # Each partition's log is on its leader's disk and nowhere else.
    for p, (leader, _) in layout.items():
        holders = {
            b.broker_id for b in cluster.brokers if any(b.data_dir.rglob(f"{topic}-{p}/*.log"))
        }
        assert holders == {leader}, f"partition {p} (leader {leader}) stored on {holders}"

    # kcat, bootstrapped from another broker, reads the same messages.
    out = subprocess.run(
        [KCAT, "-C", "-b", cluster.brokers[2].address, "-t", topic, "-e", "-q",
         "-f", r"%p %o %k\n"],
        capture_output=True, timeout=WAIT, check=True,
    ).stdout.decode()
    assert sorted(out.splitlines()) == sorted(
        f"{r.partition} {r.offset} {r.key.decode()}" for r in delivered
    )


def test_kafka_python_across_brokers(kafka_cluster):
    """kafka-python's idempotent producer (producer ids come from the
    coordinator, whichever broker hands them out) and an assign() consumer,
    each bootstrapped from a different single broker."""
    cluster = kafka_cluster(brokers=3)
    topic = "spread-kp"
    admin = admin_client(cluster.brokers[0].address)
    admin_ok(admin.create_topics([NewTopic(topic, PARTITIONS, 1)]))
    layout = leaders(cluster.brokers[0].address, topic)
    assert {leader for leader, _ in layout.values()} == {1, 2, 3}

    producer = KafkaProducer(bootstrap_servers=cluster.brokers[1].address, request_timeout_ms=10000)
    try:
        assert producer.config["enable_idempotence"] is True
        futures = [
            (b"k%d" % i, b"v%d" % i, producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % PARTITIONS))
            for i in range(9000)
        ]
        producer.flush(timeout=60)
        acked = {}
        for key, value, future in futures:
            md = future.get(timeout=WAIT)
            acked[(md.partition, md.offset)] = (key, value)
    finally:
        producer.close(timeout=10)
    assert len(acked) == 9000

    consumer = KafkaConsumer(
        bootstrap_servers=cluster.brokers[2].address, enable_auto_commit=False, group_id=None
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        assert sum(end.values()) == 9000, end
        got = {}
        deadline = time.monotonic() + WAIT
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "kafka-python consumer stuck"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for m in batch:
                    assert (tp.partition, m.offset) not in got, "offset read twice"
                    got[(tp.partition, m.offset)] = (m.key, m.value)
    finally:
        consumer.close()
    assert got == acked
