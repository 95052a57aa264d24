"""Brokers on a replicated coordinator: a 3-member ensemble whose members
each listen on a loopback address of their own, with the brokers given the
multi-host connect string.

Each scenario runs against every kind in ENSEMBLE_KINDS. Today that is the
reference, a 3-server Apache ZooKeeper 3.8 ensemble: it proves the
scenario itself, and fjord-coordinator's own ensemble joins the list when
it exists.

- kill -9 of the coordinator ensemble's leader under an idempotent acks=all
  producer, then kill -9 of a broker that leads a partition: the brokers
  move their sessions to another member without re-registering (their
  registrations keep their czxid) and without a controller change; the
  dead broker's partitions get new leaders; the producer sees no failed
  delivery, and everything acknowledged is read back exactly once.
"""

from __future__ import annotations

import pytest
from chaos import History, Workload, finish, wait_acks
from conftest import BROKER_SESSION_TIMEOUT_MS, KafkaCluster, _REPORTS
from ensemble import ZooKeeperEnsemble
from kafka_helpers import controller_id, create_replicated_topic, wait_for_partitions
from kazoo.client import KazooClient

ENSEMBLE_KINDS = ["zookeeper"]
PARTITIONS = 3
# From kill -9 of a broker to new leaders for its partitions.
ELECTION = BROKER_SESSION_TIMEOUT_MS / 1000 + 8


@pytest.fixture(params=ENSEMBLE_KINDS)
def ensemble(request, tmp_path):
    """A running 3-member coordinator ensemble; stopped at the end, with
    each member's log tail printed when the test failed."""
    members = ZooKeeperEnsemble(tmp_path / "ensemble")
    try:
        members.start()
        yield members
    finally:
        members.stop()
        reports = request.node.stash.get(_REPORTS, {})
        if any(r.failed for r in reports.values()):
            for m in members.members.values():
                print(f"--- {m.kind} log {m.log_path} (tail) ---\n{m.log_tail()}")


@pytest.fixture
def brokers_on(request, tmp_path):
    """A factory: brokers_on(ensemble, n) -> a KafkaCluster of n brokers
    registered with the ensemble; every broker is killed at the end."""
    clusters: list[KafkaCluster] = []

    def start(coordinator, count: int = 3) -> KafkaCluster:
        cluster = KafkaCluster(
            coordinator, [], tmp_path / "kafka", {"session_timeout_ms": BROKER_SESSION_TIMEOUT_MS}
        )
        clusters.append(cluster)
        for _ in range(count):
            cluster.add_broker()
        cluster.wait_for_brokers()
        return cluster

    yield start
    failed = any(r.failed for r in request.node.stash.get(_REPORTS, {}).values())
    for cluster in clusters:
        for broker in cluster.brokers:
            broker.kill()
            if failed:
                print(f"--- {broker.kind} log {broker.log_path} (tail) ---\n{broker.log_tail()}")


def registrations(connect: str) -> dict[int, int]:
    """Broker id -> czxid of its /brokers/ids registration (a broker that
    registers again gets a new one)."""
    zk = KazooClient(hosts=connect, timeout=10)
    zk.start(timeout=30)
    try:
        return {int(b): zk.get(f"/brokers/ids/{b}")[1].czxid for b in zk.get_children("/brokers/ids")}
    finally:
        zk.stop()
        zk.close()


def test_brokers_ride_through_a_coordinator_leader_kill_then_a_broker_kill(ensemble, brokers_on):
    cluster = brokers_on(ensemble)
    topic = "on-ensemble"
    states = create_replicated_topic(cluster, topic, PARTITIONS, 3, min_insync_replicas=2)
    controller = controller_id(cluster)
    registered = registrations(ensemble.address)
    assert sorted(registered) == [1, 2, 3]

    history = History()
    workload = Workload(cluster.bootstrap, topic, history, partitions=PARTITIONS).start()
    wait_acks(history, 0, range(PARTITIONS), 200, 30, "before the first kill")

    leader = ensemble.leader()
    assert leader is not None, ensemble.modes()
    killed = history.note(f"kill -9 coordinator member {leader}, the ensemble's leader")
    ensemble.members[leader].kill()
    new_leader = ensemble.wait_for_quorum(timeout=30)
    history.note(f"coordinator member {new_leader} leads")
    assert new_leader != leader
    wait_acks(history, killed, range(PARTITIONS), 300, 60, "after the coordinator leader's kill")
    # The brokers' sessions moved to the surviving members: nobody
    # registered again, and the controller is the same broker.
    assert registrations(ensemble.address) == registered
    assert controller_id(cluster) == controller

    victim = next(s.leader for _, s in sorted(states.items()) if s.leader != controller)
    killed = history.note(f"kill -9 broker {victim}")
    cluster.broker(victim).kill()
    wait_for_partitions(
        cluster,
        topic,
        lambda s: all(p.leader not in (-1, victim) for p in s.values()),
        ELECTION,
        f"every partition led by a broker other than {victim}",
    )
    wait_acks(history, killed, range(PARTITIONS), 300, 60, "after the broker's kill")
    _, _, failures = finish(cluster, workload, history, topic, PARTITIONS)
    assert not failures, f"{len(failures)} failed deliveries, e.g. {failures[:5]}"
