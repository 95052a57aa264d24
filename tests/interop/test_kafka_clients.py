"""Python Kafka clients against fjord-broker: confluent-kafka (librdkafka
2.x, bundled in its wheel) and kafka-python (pure Python).

- a bulk round trip: 100,000 messages over 8 partitions, read back with an
  assign()-only consumer, compared byte for byte at every offset;
- kafka-python's default producer, which is idempotent, with and without
  lost Produce responses (the retries must not duplicate anything);
- the admin APIs: create (with configs), describe/alter configs, create
  partitions, delete, with what the broker reports afterwards;
- max.message.bytes enforcement: MESSAGE_TOO_LARGE from the broker.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic as KpNewTopic
from kafka.errors import MessageSizeTooLargeError
from kafka_helpers import (
    WAIT,
    ProduceResponseDropper,
    Record,
    admin_client,
    admin_ok,
    admin_results,
    assert_contiguous,
    by_position,
    consume,
    produce,
    stored_bytes,
    topic_partition_counts,
)


def wait_for(condition, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.1)


def message_set(count: int, seed: int = 7) -> list[tuple]:
    """(key, value, headers) with binary values of every length up to 200,
    some NULL keys and values, and headers on some messages."""
    rng = random.Random(seed)
    messages = []
    for i in range(count):
        key = None if i % 97 == 0 else b"key-%d" % i
        value = None if i % 89 == 0 else rng.randbytes(i % 201)
        headers = [("i", b"%d" % i), ("bin", bytes([i % 256, 0, 255]))] if i % 10 == 0 else None
        messages.append((key, value, headers))
    return messages


# --- confluent-kafka: bulk round trip ----------------------------------------


def test_confluent_bulk_round_trip(kafka_cluster):
    """100,000 messages over an 8-partition topic (created by AdminClient);
    an assign()-only consumer (a group id but no group APIs, no commits)
    reads every one back, byte-exact, at the offset its delivery report
    named, with each partition's offsets contiguous from 0."""
    cluster = kafka_cluster()
    topic = "bulk"
    admin = admin_client(cluster.bootstrap)
    admin_ok(admin.create_topics([NewTopic(topic, num_partitions=8, replication_factor=1)]))
    wait_for(lambda: topic_partition_counts(admin).get(topic) == 8, "topic with 8 partitions listed")

    sent = message_set(100_000)
    started = time.monotonic()
    delivered, failed = produce(cluster.bootstrap, topic, sent, timeout=60)
    assert not failed, f"{len(failed)} deliveries failed, e.g. {failed[:3]}"
    assert len(delivered) == len(sent)
    # Every message sent was delivered once (the reports match what went in).
    normalise = lambda h: tuple(h or ())  # noqa: E731
    assert Counter((r.key, r.value, r.headers) for r in delivered) == Counter(
        (k, v, normalise(h)) for k, v, h in sent
    )

    got = consume(cluster.bootstrap, topic, list(range(8)), timeout=60)
    elapsed = time.monotonic() - started
    counts = assert_contiguous(got)
    assert sum(counts.values()) == len(sent)
    assert set(counts) == set(range(8)), f"partitions used: {sorted(counts)}"
    assert by_position(got) == by_position(delivered)
    assert Counter((r.partition, r.key, r.value) for r in got) == Counter(
        (r.partition, r.key, r.value) for r in delivered
    )
    assert elapsed < 60, f"round trip took {elapsed:.1f}s"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_confluent_compression(kafka_cluster, codec):
    """Each codec with librdkafka 2.1x: the batches reach the broker
    compressed and are stored that way (librdkafka sends a codec only to a
    broker whose ApiVersions it trusts to take it, and silently falls back
    to no compression otherwise), and read back exactly."""
    cluster = kafka_cluster()
    topic = f"ck-{codec}"
    sent = [(b"k%d" % i, b"compressible %d " % i + b"abcdefgh" * 100, None, 0) for i in range(500)]
    delivered, failed = produce(cluster.bootstrap, topic, sent, **{"compression.type": codec})
    assert not failed, failed
    got = consume(cluster.bootstrap, topic, [0])
    assert_contiguous(got)
    assert by_position(got) == by_position(delivered)
    assert Counter((r.key, r.value) for r in got) == Counter((k, v) for k, v, _, _ in sent)
    raw = sum(len(k) + len(v) for k, v, _, _ in sent)
    stored = stored_bytes(cluster, topic)
    assert 0 < stored < raw / 4, f"{codec}: {stored} bytes stored for {raw} bytes of payload"


# --- kafka-python: the default (idempotent) producer ---------------------------


def kafka_python_consume_all(bootstrap: str, topic: str, partitions: list[int]) -> list[Record]:
    """assign() + seek_to_beginning, read up to the end offsets taken first."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=20000,
    )
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Record] = []
        deadline = time.monotonic() + WAIT
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, (
                f"kafka-python consumer stuck: positions "
                f"{ {tp.partition: consumer.position(tp) for tp in tps} }, end {end}"
            )
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for m in messages:
                    headers = tuple((k, v) for k, v in m.headers)
                    records.append(Record(tp.partition, m.offset, m.key, m.value, headers))
        # Nothing beyond the end either.
        extra = consumer.poll(timeout_ms=500)
        assert not any(extra.values()), f"records past the end offsets: {extra}"
        return records
    finally:
        consumer.close()


def kafka_python_produce(bootstrap: str, topic: str, count: int, partitions: int):
    """Send with kafka-python's defaults; returns (producer config, producer
    id, [(partition, offset, key, value)]) from the acknowledgements."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        config = dict(producer.config)
        futures = []
        for i in range(count):
            key = b"kp-%d" % i
            value = b"value %d " % i + bytes(range(256))[: i % 256]
            futures.append((key, value, producer.send(topic, key=key, value=value, partition=i % partitions)))
        producer.flush(timeout=60)
        acked = []
        for key, value, future in futures:
            metadata = future.get(timeout=WAIT)
            acked.append(Record(metadata.partition, metadata.offset, key, value))
        manager = producer._transaction_manager
        producer_id = manager.producer_id_and_epoch.producer_id if manager else None
        return config, producer_id, acked
    finally:
        producer.close(timeout=10)


def check_exactly_once(acked: list[Record], got: list[Record], count: int) -> None:
    counts = assert_contiguous(got)
    assert sum(counts.values()) == len(got)
    duplicates = [kv for kv, n in Counter((r.key, r.value) for r in got).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} messages stored more than once, e.g. {duplicates[:3]}"
    assert len(got) == count, f"{len(got)} records stored for {count} sent"
    # Each message at the offset its acknowledgement named.
    assert {(r.partition, r.offset): (r.key, r.value) for r in got} == {
        (r.partition, r.offset): (r.key, r.value) for r in acked
    }


def test_kafka_python_idempotent_round_trip(kafka_cluster):
    """kafka-python 3.x enables idempotence (and acks=all) by default: it
    must get a producer id from InitProducerId and keep it enabled against
    this broker (it guesses the broker's version from ApiVersions). An
    assign()/seek_to_beginning consumer reads each message exactly once."""
    cluster = kafka_cluster(num_partitions=3)
    topic = "kp-idempotent"
    config, producer_id, acked = kafka_python_produce(cluster.bootstrap, topic, 3000, 3)
    assert config["enable_idempotence"] is True, (
        f"kafka-python turned idempotence off (api_version guessed {config['api_version']})"
    )
    assert config["acks"] == -1
    assert producer_id is not None and producer_id >= 0, f"producer id {producer_id}"
    got = kafka_python_consume_all(cluster.bootstrap, topic, [0, 1, 2])
    check_exactly_once(acked, got, 3000)


def test_kafka_python_retries_are_not_duplicated(kafka_cluster):
    """Through a proxy that swallows some Produce responses and cuts the
    connection, kafka-python's idempotent producer resends batches the
    broker already has; the broker must drop those duplicates."""
    proxy = ProduceResponseDropper(drop_every=3, max_drops=3)
    try:
        cluster = kafka_cluster(num_partitions=2, advertised=proxy.address)
        proxy.target = (cluster.brokers[0].host, cluster.brokers[0].port)
        topic = "kp-retries"
        # Small batches, so there are many Produce requests to lose.
        producer = KafkaProducer(
            bootstrap_servers=proxy.address,
            batch_size=2000,
            linger_ms=2,
            request_timeout_ms=10000,
            reconnect_backoff_ms=50,
        )
        try:
            assert producer.config["enable_idempotence"] is True
            futures = []
            for i in range(2000):
                key, value = b"r-%d" % i, b"payload %d " % i + b"z" * 50
                futures.append((key, value, producer.send(topic, key=key, value=value, partition=i % 2)))
            producer.flush(timeout=60)
            acked = []
            for key, value, future in futures:
                metadata = future.get(timeout=WAIT)
                acked.append(Record(metadata.partition, metadata.offset, key, value))
        finally:
            producer.close(timeout=10)
        assert proxy.dropped == 3, f"only {proxy.dropped} Produce responses were dropped"
        got = kafka_python_consume_all(proxy.address, topic, [0, 1])
        check_exactly_once(acked, got, 2000)
        # Idempotence also keeps the order of each partition.
        for p in (0, 1):
            keys = [r.key for r in got if r.partition == p]
            assert keys == [b"r-%d" % i for i in range(p, 2000, 2)]
    finally:
        proxy.close()


def test_confluent_idempotent_retries_are_not_duplicated(kafka_cluster):
    """The same with librdkafka's idempotent producer."""
    proxy = ProduceResponseDropper(drop_every=3, max_drops=3)
    try:
        cluster = kafka_cluster(num_partitions=2, advertised=proxy.address)
        proxy.target = (cluster.brokers[0].host, cluster.brokers[0].port)
        topic = "ck-retries"
        sent = [(b"c-%d" % i, b"payload %d " % i + b"y" * 50, None, i % 2) for i in range(2000)]
        delivered, failed = produce(
            proxy.address,
            topic,
            sent,
            **{"enable.idempotence": True, "batch.num.messages": 20, "linger.ms": 2},
        )
        assert not failed, f"{len(failed)} deliveries failed, e.g. {failed[:3]}"
        assert proxy.dropped == 3, f"only {proxy.dropped} Produce responses were dropped"
        got = consume(proxy.address, topic, [0, 1])
        check_exactly_once(delivered, got, 2000)
        for p in (0, 1):
            keys = [r.key for r in got if r.partition == p]
            assert keys == [b"c-%d" % i for i in range(p, 2000, 2)]
    finally:
        proxy.close()


# --- admin APIs ----------------------------------------------------------------


def topic_configs(admin, topic: str) -> dict[str, tuple[str, int]]:
    """{name: (value, source)} from DescribeConfigs."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    (entries,) = admin_ok(admin.describe_configs([resource])).values()
    return {name: (entry.value, entry.source) for name, entry in entries.items()}


DYNAMIC = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
DEFAULT = ConfigSource.DEFAULT_CONFIG.value


def test_confluent_create_topic_with_configs(kafka_cluster):
    """CreateTopics with partitions and configs; Metadata then lists the
    partitions (each with a leader) and DescribeConfigs the values, as
    dynamic topic configs, next to defaults."""
    cluster = kafka_cluster()
    admin = admin_client(cluster.bootstrap)
    configs = {"retention.ms": "3600000", "max.message.bytes": "50000", "cleanup.policy": "delete"}
    admin_ok(admin.create_topics([NewTopic("created", 3, 1, config=configs)]))
    wait_for(lambda: topic_partition_counts(admin).get("created") == 3, "3 partitions listed")
    metadata = admin.list_topics(timeout=WAIT).topics["created"]
    assert sorted(metadata.partitions) == [0, 1, 2]
    for p in metadata.partitions.values():
        assert p.leader == 1 and p.replicas == [1] and p.isrs == [1], p

    described = topic_configs(admin, "created")
    for name, value in configs.items():
        assert described[name] == (value, DYNAMIC), name
    assert described["segment.bytes"][1] == DEFAULT
    assert described["min.insync.replicas"] == ("1", DEFAULT)

    # Creating it again: TOPIC_ALREADY_EXISTS. Bad arguments: their own errors.
    (again,) = admin_results(admin.create_topics([NewTopic("created", 3, 1)])).values()
    assert isinstance(again, KafkaException)
    assert again.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    (zero,) = admin_results(admin.create_topics([NewTopic("zero-partitions", 0, 1)])).values()
    assert isinstance(zero, KafkaException)
    assert zero.args[0].code() == KafkaError.INVALID_PARTITIONS
    assert "zero-partitions" not in topic_partition_counts(admin)


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_confluent_alter_configs(kafka_cluster):
    """AlterConfigs replaces a topic's whole set of dynamic configs."""
    cluster = kafka_cluster()
    admin = admin_client(cluster.bootstrap)
    admin_ok(
        admin.create_topics(
            [NewTopic("altered", 1, 1, config={"retention.ms": "1000000", "max.message.bytes": "4000"})]
        )
    )
    resource = ConfigResource(ResourceType.TOPIC, "altered", set_config={"retention.ms": "999"})
    admin_ok(admin.alter_configs([resource]))
    described = topic_configs(admin, "altered")
    assert described["retention.ms"] == ("999", DYNAMIC)
    # Not in the new set: back to the default.
    assert described["max.message.bytes"][1] == DEFAULT
    assert described["max.message.bytes"][0] != "4000"


def test_confluent_incremental_alter_configs(kafka_cluster):
    """IncrementalAlterConfigs SET and DELETE touch only the named keys."""
    cluster = kafka_cluster()
    admin = admin_client(cluster.bootstrap)
    admin_ok(
        admin.create_topics(
            [NewTopic("incremental", 1, 1, config={"retention.ms": "1000000", "max.message.bytes": "4000"})]
        )
    )
    before = topic_configs(admin, "incremental")
    assert before["retention.ms"] == ("1000000", DYNAMIC)
    resource = ConfigResource(
        ResourceType.TOPIC,
        "incremental",
        incremental_configs=[
            ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    admin_ok(admin.incremental_alter_configs([resource]))
    described = topic_configs(admin, "incremental")
    assert described["segment.bytes"] == ("1048576", DYNAMIC)
    assert described["max.message.bytes"] == ("4000", DYNAMIC)
    assert described["retention.ms"][1] == DEFAULT
    assert described["retention.ms"][0] != "1000000"


def test_config_changes_back_to_back(kafka_cluster):
    """Two IncrementalAlterConfigs in a row, each on its own key, then a
    DescribeConfigs: both changes are there (the second must not write back
    a stale copy without the first), and at once (an acknowledged change is
    what the next describe reports). Repeated, because a race shows only
    now and then."""
    cluster = kafka_cluster()
    admin = admin_client(cluster.bootstrap)
    admin_ok(admin.create_topics([NewTopic("back-to-back", 1, 1)]))
    rounds = 200
    stale, lost = [], []
    for i in range(rounds):
        wanted = {"retention.ms": str(1_000_000 + i), "segment.bytes": str(2_000_000 + i)}
        for name, value in wanted.items():
            entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
            resource = ConfigResource(ResourceType.TOPIC, "back-to-back", incremental_configs=[entry])
            admin_ok(admin.incremental_alter_configs([resource]))
        got = {k: v for k, (v, _) in topic_configs(admin, "back-to-back").items() if k in wanted}
        if got != wanted:
            stale.append((i, got))
            time.sleep(0.5)
            later = {k: v for k, (v, _) in topic_configs(admin, "back-to-back").items() if k in wanted}
            if later != wanted:
                lost.append((i, later))
                # Start the next round from a known state.
                for name, value in wanted.items():
                    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
                    resource = ConfigResource(ResourceType.TOPIC, "back-to-back", incremental_configs=[entry])
                    admin_ok(admin.incremental_alter_configs([resource]))
                time.sleep(0.5)
    assert not lost, f"{len(lost)} of {rounds} rounds lost an acknowledged change, e.g. {lost[:3]}"
    assert not stale, f"{len(stale)} of {rounds} describes missed an acknowledged change, e.g. {stale[:3]}"


def test_confluent_create_partitions(kafka_cluster):
    """CreatePartitions grows a topic; the new partitions get leaders and
    take messages; shrinking is refused."""
    cluster = kafka_cluster()
    admin = admin_client(cluster.bootstrap)
    admin_ok(admin.create_topics([NewTopic("growing", 2, 1)]))
    admin_ok(admin.create_partitions([NewPartitions("growing", 5)]))

    def led_partitions():
        metadata = admin.list_topics(timeout=WAIT).topics.get("growing")
        return sorted(p.id for p in metadata.partitions.values() if p.leader == 1)

    wait_for(lambda: led_partitions() == [0, 1, 2, 3, 4], "5 partitions with leaders listed")

    delivered, failed = produce(
        cluster.bootstrap, "growing", [(b"k%d" % p, b"v%d" % p, None, p) for p in range(5)]
    )
    assert not failed, failed
    assert sorted((r.partition, r.offset) for r in delivered) == [(p, 0) for p in range(5)]

    (shrink,) = admin_results(admin.create_partitions([NewPartitions("growing", 3)])).values()
    assert isinstance(shrink, KafkaException)
    assert shrink.args[0].code() == KafkaError.INVALID_PARTITIONS
    assert topic_partition_counts(admin)["growing"] == 5


def test_confluent_delete_topic(kafka_cluster):
    """DeleteTopics removes a topic: Metadata no longer lists it and
    DescribeConfigs no longer knows it; an unknown topic is an error."""
    cluster = kafka_cluster()
    admin = admin_client(cluster.bootstrap)
    admin_ok(admin.create_topics([NewTopic("doomed", 2, 1), NewTopic("kept", 1, 1)]))
    wait_for(lambda: {"doomed", "kept"} <= set(topic_partition_counts(admin)), "topics listed")
    admin_ok(admin.delete_topics(["doomed"], operation_timeout=20))
    wait_for(lambda: "doomed" not in topic_partition_counts(admin), "deleted topic gone")
    assert "kept" in topic_partition_counts(admin)
    described = admin_results(admin.describe_configs([ConfigResource(ResourceType.TOPIC, "doomed")]))
    (error,) = described.values()
    assert isinstance(error, KafkaException), described
    assert error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    (unknown,) = admin_results(admin.delete_topics(["never-was"], operation_timeout=20)).values()
    assert isinstance(unknown, KafkaException)
    assert unknown.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_kafka_python_admin_create_and_delete(kafka_cluster):
    """kafka-python's KafkaAdminClient (which sends to the controller named
    in Metadata): create, list, describe, delete."""
    cluster = kafka_cluster()
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=20000)
    try:
        admin.create_topics(
            [KpNewTopic("kp-admin", 4, 1, topic_configs={"retention.ms": "7200000"})], timeout_ms=20000
        )
        assert "kp-admin" in admin.list_topics()
        (described,) = admin.describe_topics(["kp-admin"])
        assert described["error_code"] == 0
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2, 3]
        ck_admin = admin_client(cluster.bootstrap)
        assert topic_configs(ck_admin, "kp-admin")["retention.ms"] == ("7200000", DYNAMIC)

        admin.delete_topics(["kp-admin"], timeout_ms=20000)
        wait_for(lambda: "kp-admin" not in admin.list_topics(), "deleted topic gone")
    finally:
        admin.close()


# --- max.message.bytes -----------------------------------------------------------


def test_message_too_large_confluent(kafka_cluster):
    """A batch over the topic's max.message.bytes (1000) is refused by the
    broker with MESSAGE_TOO_LARGE (the client's own limit is set far higher,
    so the broker is the one refusing); smaller ones around it are stored."""
    cluster = kafka_cluster()
    admin = admin_client(cluster.bootstrap)
    admin_ok(admin.create_topics([NewTopic("small-limit", 1, 1, config={"max.message.bytes": "1000"})]))
    config = {"message.max.bytes": 10_000_000, "linger.ms": 0, "enable.idempotence": False}
    delivered, failed = produce(cluster.bootstrap, "small-limit", [(b"a", b"a" * 500)], **config)
    assert not failed and [(r.offset, r.value) for r in delivered] == [(0, b"a" * 500)]
    delivered, failed = produce(cluster.bootstrap, "small-limit", [(b"b", b"b" * 5000)], **config)
    assert delivered == []
    assert [(key, err.code()) for key, err in failed] == [(b"b", KafkaError.MSG_SIZE_TOO_LARGE)], failed
    delivered, failed = produce(cluster.bootstrap, "small-limit", [(b"c", b"c" * 500)], **config)
    assert not failed and [(r.offset, r.value) for r in delivered] == [(1, b"c" * 500)]
    got = consume(cluster.bootstrap, "small-limit", [0])
    assert [(r.offset, r.key) for r in got] == [(0, b"a"), (1, b"c")]


def test_message_too_large_broker_default_kafka_python(kafka_cluster):
    """The broker-wide default (--max-message-bytes) applies to topics without
    their own limit; kafka-python gets MessageSizeTooLargeError."""
    cluster = kafka_cluster(max_message_bytes=2000)
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, request_timeout_ms=10000)
    try:
        ok = producer.send("kp-limit", value=b"x" * 1000, partition=0).get(timeout=WAIT)
        assert ok.offset == 0
        with pytest.raises(MessageSizeTooLargeError):
            producer.send("kp-limit", value=b"y" * 5000, partition=0).get(timeout=WAIT)
    finally:
        producer.close(timeout=10)

