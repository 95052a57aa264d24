"""Prometheus metrics and health endpoints (`--http-listen`) of real
processes, scraped while real clients work against them.

The broker's series carry the names Kafka's JMX exporter and kafka_exporter
give (so Kafka dashboards and alert rules work unchanged), the
coordinator's those of ZooKeeper 3.8's Prometheus provider. Every scrape is
parsed by the `prometheus-client` package's parsers, in both exposition
formats, and linted with `promtool check metrics`. The monitoring files
shipped under scripts/monitoring are checked with promtool too, and the
alert rules unit-tested with it.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from kazoo.client import KazooClient

from conftest import STARTUP_TIMEOUT, _start_fjord
from kafka_helpers import (
    RDKAFKA_LOG,
    create_replicated_topic,
    high_watermarks,
    produce,
    wait_for,
)
from metrics_helpers import broker_http, http_address, http_get, promtool_lint, scrape

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "scripts" / "monitoring"
TOPIC = "metrics-orders"
PARTITIONS = 3
# Records produced, while scrapes run.
MESSAGES = 3000
# The coordinator series ZooKeeper names with `_count` although they are
# gauges: promtool's linter objects to exactly these, as it does on ZooKeeper.
ZOOKEEPER_COUNT_GAUGES = {
    "auth_failed_count",
    "ephemerals_count",
    "max_file_descriptor_count",
    "open_file_descriptor_count",
    "watch_count",
    "znode_count",
}


def scrapes(cluster, openmetrics: bool = False) -> dict[int, object]:
    return {b.broker_id: scrape(broker_http(b), openmetrics) for b in cluster.reachable}


def summed(by_broker: dict, name: str, **labels) -> float:
    return sum(s.total(name, **labels) for s in by_broker.values())


def test_broker_metrics_follow_traffic_failures_and_groups(kafka_cluster):
    cluster = kafka_cluster(brokers=3, http_listen="127.0.0.1:0")
    create_replicated_topic(cluster, TOPIC, PARTITIONS, 3, min_insync_replicas=2)
    # Scrapes while the records go in: each must answer and parse, under load.
    stop = threading.Event()
    scraped, scrape_errors = [], []

    def keep_scraping():
        while not stop.is_set():
            for b in cluster.brokers:
                try:
                    scraped.append(scrape(broker_http(b)))
                except Exception as e:  # noqa: BLE001 - the test reports it
                    scrape_errors.append(repr(e))

    scraper = threading.Thread(target=keep_scraping, daemon=True)
    scraper.start()
    try:
        delivered, failed = produce(
            cluster.bootstrap,
            TOPIC,
            [(f"k{i}".encode(), b"v" * 100) for i in range(MESSAGES)],
            acks="all",
        )
    finally:
        stop.set()
        scraper.join(30)
    assert not failed and len(delivered) == MESSAGES
    assert not scrape_errors, scrape_errors[:3]
    assert len(scraped) >= 3, len(scraped)

    before = scrapes(cluster)
    # Both formats parse, and say the same.
    as_openmetrics = scrapes(cluster, openmetrics=True)
    assert summed(as_openmetrics, "kafka_server_brokertopicmetrics_messagesin_total", topic=TOPIC) == MESSAGES
    assert summed(before, "kafka_server_brokertopicmetrics_messagesin_total", topic=TOPIC) == MESSAGES
    # The unlabelled series counts every topic, as Kafka's does.
    assert all(
        s.value("kafka_server_brokertopicmetrics_messagesin_total")
        >= s.total("kafka_server_brokertopicmetrics_messagesin_total", topic=TOPIC)
        for s in before.values()
    )
    assert summed(before, "kafka_server_brokertopicmetrics_bytesin_total", topic=TOPIC) >= MESSAGES * 100
    assert summed(before, "kafka_controller_kafkacontroller_activecontrollercount") == 1
    assert summed(before, "kafka_server_replicamanager_leadercount") >= PARTITIONS
    assert summed(before, "kafka_server_replicamanager_underreplicatedpartitions") == 0
    assert summed(before, "kafka_network_requestmetrics_requests_total", request="Produce") >= 1
    assert summed(before, "kafka_network_requestmetrics_errors_total", request="Produce", error="NONE") >= PARTITIONS
    assert summed(before, "fjord_request_duration_seconds_count", request="Produce") >= 1
    assert summed(before, "fjord_produce_acks_all_wait_seconds_count") >= 1
    # Each replica's log: the same end offset everywhere, the high watermark.
    marks = high_watermarks(cluster.bootstrap, TOPIC, range(PARTITIONS))
    assert sum(marks.values()) == MESSAGES
    for p in range(PARTITIONS):
        ends = [s.value("kafka_log_log_logendoffset", topic=TOPIC, partition=str(p)) for s in before.values()]
        sizes = [s.value("kafka_log_log_size", topic=TOPIC, partition=str(p)) for s in before.values()]
        assert ends == [marks[p]] * 3, (p, ends, marks)
        assert all(size > 0 for size in sizes), sizes
        assert summed(before, "kafka_topic_partition_current_offset", topic=TOPIC, partition=p) == marks[p]
    for broker_id, s in before.items():
        lint = promtool_lint(s.text)
        if lint is not None:
            assert lint == (0, set()), f"broker {broker_id}: promtool check metrics: {lint}"

    # A group commits half of each partition: the lag is the rest, reported
    # once, by the group's coordinator, as kafka_exporter names it.
    group = "metrics-group"
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, **RDKAFKA_LOG})
    try:
        committed = {p: marks[p] // 2 for p in range(PARTITIONS)}
        consumer.commit(
            offsets=[TopicPartition(TOPIC, p, o) for p, o in committed.items()], asynchronous=False
        )
        read_back = consumer.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
        assert {t.partition: t.offset for t in read_back} == committed
    finally:
        consumer.close()

    def lags():
        by_broker = scrapes(cluster)
        rows = [
            (l["partition"], v)
            for s in by_broker.values()
            for l, v in s.values("kafka_consumergroup_lag", consumergroup=group, topic=TOPIC)
        ]
        return rows if len(rows) == PARTITIONS else None

    rows = wait_for(lags, 10, "a lag sample for every partition")
    assert sorted(rows) == sorted((str(p), marks[p] - committed[p]) for p in range(PARTITIONS))
    after_group = scrapes(cluster)
    assert summed(after_group, "kafka_consumergroup_lag_sum", consumergroup=group, topic=TOPIC) == sum(
        marks[p] - committed[p] for p in range(PARTITIONS)
    )
    assert summed(after_group, "kafka_consumergroup_current_offset", consumergroup=group) == sum(
        committed.values()
    )

    # kill -9 of a follower: leaders drop it from their ISRs and say so.
    controller = next(i for i, s in before.items() if s.value("kafka_controller_kafkacontroller_activecontrollercount") == 1)
    victim = next(b for b in cluster.brokers if b.broker_id != controller)
    shrinks_before = summed(before, "kafka_server_replicamanager_isrshrinks_total")
    victim.kill()

    def shrunk():
        # The partitions the victim led are offline until the controller has moved
        # their leadership (Kafka counts them the same way); with three replicas each,
        # that count must come back to 0.
        now = scrapes(cluster)
        ok = (
            summed(now, "kafka_server_replicamanager_isrshrinks_total") > shrinks_before
            and summed(now, "kafka_server_replicamanager_underreplicatedpartitions") >= 1
            and summed(now, "kafka_controller_kafkacontroller_offlinepartitionscount") == 0
        )
        return now if ok else None

    during = wait_for(
        shrunk, 30, "an ISR shrink, under-replicated partitions and no offline one after kill -9"
    )
    assert summed(during, "kafka_controller_kafkacontroller_activecontrollercount") == 1
    # min.insync.replicas=2 and two replicas left: at the minimum, not under it.
    assert summed(during, "kafka_server_replicamanager_underminisrpartitioncount") == 0
    assert summed(during, "kafka_server_replicamanager_atminisrpartitioncount") >= 1
    expands_before = summed(during, "kafka_server_replicamanager_isrexpands_total")
    victim.restart()

    def healed():
        now = scrapes(cluster)
        ok = (
            summed(now, "kafka_server_replicamanager_isrexpands_total") > expands_before
            and summed(now, "kafka_server_replicamanager_underreplicatedpartitions") == 0
        )
        return ok

    wait_for(healed, 60, "the ISR expanded again and nothing under-replicated")

    # Health: every broker is ready; one cut off from the coordinator is not.
    for b in cluster.brokers:
        assert http_get(broker_http(b), "/healthz")[0] == 200
        assert http_get(broker_http(b), "/readyz")[0] == 200
    cluster.coordinator.process.kill()
    cluster.coordinator.process.wait(10)
    probe = cluster.brokers[0]
    status = wait_for(
        lambda: (s := http_get(broker_http(probe), "/readyz"))[0] == 503 and s,
        30,
        "/readyz 503 once the broker is fenced",
    )
    assert "fenced" in status[2]
    assert http_get(broker_http(probe), "/healthz")[0] == 200
    assert http_get(broker_http(probe), "/nope")[0] == 404


@pytest.fixture
def coordinator(tmp_path):
    workdir = tmp_path / "coordinator"
    (workdir / "data").mkdir(parents=True)
    server = _start_fjord(workdir, ("--http-listen", "127.0.0.1:0"))
    yield server, http_address(workdir / "stdout.txt")
    server.stop()


def test_coordinator_metrics_carry_zookeepers_names(coordinator):
    server, http = coordinator
    zk = KazooClient(hosts=server.address)
    zk.start(timeout=STARTUP_TIMEOUT)
    try:
        fired = []
        zk.create("/app", b"{}")
        zk.exists("/app/new", watch=fired.append)
        for i in range(10):
            zk.create(f"/app/n{i}", b"x" * 10)
        zk.create("/app/e", b"", ephemeral=True)
        zk.get("/app/n0")
        zk.create("/app/new", b"")
        wait_for(lambda: fired, 10, "the exists watch fired")
        mntr = dict(
            line.split("\t", 1) for line in server.four_letter("mntr").splitlines() if "\t" in line
        )
        for openmetrics in (False, True):
            s = scrape(http, openmetrics)
            assert s.value("znode_count") == int(mntr["zk_znode_count"])
            assert s.value("ephemerals_count") == 1
            assert s.value("global_sessions") == 1
            assert s.value("num_alive_connections") == 1
            assert s.value("fsynctime_count") >= 1
            assert s.value("sync_processor_batch_size_count") >= 1
            assert s.value("updatelatency_count") >= 12
            assert s.value("readlatency_count") >= 2
            assert s.value("node_created_watch_count_count") >= 1
            assert s.value("write_per_namespace_count", key="app") >= 12
            assert s.value("commit_count") >= 12
            assert s.value("fjord_coordinator_serving") == 1
            assert s.value("fjord_coordinator_leader") == 1
            assert s.value("process_resident_memory_bytes") > 0
        lint = promtool_lint(scrape(http).text)
        if lint is not None:
            code, names = lint
            assert names == ZOOKEEPER_COUNT_GAUGES, names
            assert code == 3, "promtool exits 3 for lint findings only"
        assert http_get(http, "/healthz")[0] == 200
        assert http_get(http, "/readyz")[0] == 200
    finally:
        zk.stop()
        zk.close()


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")
def test_shipped_prometheus_config_and_alert_rules_are_valid():
    for args in (
        ["check", "config", str(MONITORING / "prometheus.yml")],
        ["check", "rules", str(MONITORING / "alerts.yml")],
        ["test", "rules", str(MONITORING / "alerts-test.yml")],
    ):
        done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=MONITORING)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
