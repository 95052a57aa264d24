"""Brokers on a replicated coordinator: a 3-member ensemble whose members
each listen on a loopback address of their own, with the brokers given the
multi-host connect string.

Each scenario runs against every kind in ENSEMBLE_KINDS: a 3-member
fjord-coordinator ensemble, and the reference, a 3-server Apache ZooKeeper
3.8 ensemble, which proves the scenario itself.

- kill -9 of the coordinator ensemble's leader under an idempotent acks=all
  producer, then kill -9 of a broker that leads a partition: the brokers
  move their sessions to another member without re-registering (their
  registrations keep their czxid) and without a controller change; the
  dead broker's partitions get new leaders; the producer sees no failed
  delivery, and everything acknowledged is read back exactly once.
- a register (one znode: sync + getData, setData, setData at a version)
  used by three clients through kill -9 of the ensemble's leader and its
  restart, and through SIGSTOP of the leader past the election timeout and
  SIGCONT: the history is linearizable (linearizable.py; reads are checked
  on kinds that promise linearizable reads, which ZooKeeper does not), the
  clients keep making progress, and afterwards every member has the same
  tree.
"""

from __future__ import annotations

import pytest
from chaos import History, Workload, finish, wait_acks
from conftest import BROKER_SESSION_TIMEOUT_MS, KafkaCluster, _REPORTS
import time
from dataclasses import replace

from ensemble import ENSEMBLES, tree_digest
from linearizable import check as check_linearizable
from register import RegisterWorkload
from kafka_helpers import controller_id, create_replicated_topic, wait_for_partitions
from kazoo.client import KazooClient

ENSEMBLE_KINDS = ["fjord", "zookeeper"]
# Kinds whose sync + read is linearizable. ZooKeeper promises sequential
# consistency only, and its sync is not a quorum operation: a deposed leader
# answers sync + getData from its own tree for a moment after a SIGSTOP
# (seen here in about one run in four), and a stale read was also seen once
# in about 25 runs of the kill scenario.
# Fjord's sync asks the leader for its commit index, confirmed by a quorum
# (no leases), so sync + getData is linearizable there.
LINEARIZABLE_READS: set[str] = {"fjord"}
PARTITIONS = 3
# From kill -9 of a broker to new leaders for its partitions.
ELECTION = BROKER_SESSION_TIMEOUT_MS / 1000 + 8


@pytest.fixture(params=ENSEMBLE_KINDS)
def ensemble(request, tmp_path):
    """A running 3-member coordinator ensemble; stopped at the end, with
    each member's log tail printed when the test failed."""
    members = ENSEMBLES[request.param](tmp_path / "ensemble")
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


def wait_progress(workload: RegisterWorkload, after: float, count: int, timeout: float, what: str) -> None:
    """Until `count` writes or compare-and-sets invoked after `after` were answered."""
    deadline = time.monotonic() + timeout
    while workload.answered("write", after) + workload.answered("cas", after) < count:
        assert time.monotonic() < deadline, f"fewer than {count} writes answered {what} within {timeout}s"
        time.sleep(0.1)


def create_register(ensemble, path: str) -> None:
    zk = KazooClient(hosts=ensemble.address, timeout=10)
    zk.start(timeout=30)
    try:
        zk.create(path, b"0")
    finally:
        zk.stop()
        zk.close()


def check_history(ops, kind: str) -> None:
    """The history must be linearizable: its writes and compare-and-sets on
    every kind, its reads too on kinds that promise linearizable reads (on
    the others the verdict with reads is printed). And the checker must
    reject it with one read answered with a value nobody wrote: it has
    teeth on this very history."""
    answered = [o for o in ops if o.answered]
    assert len(answered) >= 120, f"only {len(answered)} operations answered"
    reads = kind in LINEARIZABLE_READS
    kept = ops if reads else [o for o in ops if o.kind != "read"]
    verdict = check_linearizable(kept, (b"0", 0))
    print(f"{len(answered)} answered, {len(ops) - len(answered)} unknown; reads checked: {reads}; {verdict.explain()}")
    assert verdict.ok, verdict.explain()
    if not reads:
        print(f"{kind}, with reads: {check_linearizable(ops, (b'0', 0)).explain(limit=3)}")
    i, last_read = max((i, o) for i, o in enumerate(ops) if o.kind == "read" and o.answered)
    forged = ops[:i] + [replace(last_read, result=(b"forged", last_read.result[1]))] + ops[i + 1 :]
    assert not check_linearizable(forged, (b"0", 0)).ok


def register_under_faults(ensemble, seed: int, faults) -> None:
    """Three clients use a register while `faults(leader, workload)` runs
    (given the ensemble's leader at that moment); then the history is
    checked and every member must have the same tree."""
    path = "/register"
    create_register(ensemble, path)
    workload = RegisterWorkload(ensemble.address, path, clients=3, seed=seed).start()
    try:
        wait_progress(workload, 0, 30, 30, "at the start")
        leader = ensemble.leader()
        assert leader is not None, ensemble.modes()
        faults(leader, workload)
    finally:
        ops = workload.stop()
    check_history(ops, ensemble.kind)
    digests = {sid: tree_digest(m.address) for sid, m in ensemble.members.items()}
    assert len(set(digests.values())) == 1, f"members disagree: {digests}"


def test_a_register_stays_linearizable_through_a_leader_kill_and_restart(ensemble):
    def faults(leader: int, workload: RegisterWorkload) -> None:
        ensemble.members[leader].kill()
        killed = time.monotonic()
        assert ensemble.wait_for_quorum(timeout=30) != leader
        wait_progress(workload, killed, 30, 30, "after the leader's kill")
        ensemble.restart(leader)
        restarted = time.monotonic()
        ensemble.wait_for_quorum(timeout=30)
        wait_progress(workload, restarted, 30, 30, "after the restart")

    register_under_faults(ensemble, 7, faults)


def test_a_register_through_a_frozen_leader(ensemble):
    """SIGSTOP of the leader past the election timeout, then SIGCONT: the
    old leader acknowledges no write after it was replaced (writes and
    compare-and-sets stay linearizable; reads too where the kind promises
    it, see LINEARIZABLE_READS)."""

    def faults(leader: int, workload: RegisterWorkload) -> None:
        ensemble.members[leader].pause()
        paused = time.monotonic()
        # Followers give up on a silent leader after syncLimit ticks (2.5 s).
        assert ensemble.wait_for_quorum(timeout=30) != leader
        wait_progress(workload, paused, 30, 30, "while the old leader is frozen")
        ensemble.members[leader].resume()
        resumed = time.monotonic()
        ensemble.wait_for_quorum(timeout=30)
        wait_progress(workload, resumed, 30, 30, "after the old leader resumed")

    register_under_faults(ensemble, 11, faults)
