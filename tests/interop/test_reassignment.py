"""Growing and shrinking a cluster under load, with real clients.

Three brokers; a 6-partition topic (RF3, min.insync.replicas=2) written by
an idempotent acks=all producer (confluent-kafka, chaos.Workload) and read
by a consumer group of two confluent-kafka members in processes of their
own (group_member.py) that commit what they process.

1. A fourth broker starts; half the partitions move onto it with
   `fjord topics reassign --execute --throttle` (each gives up its first
   replica), and the controller is killed with -9 while they move (then
   restarted): the next controller finishes the reassignment.
2. `fjord cluster decommission 1 --throttle` moves every replica off broker
   1 (the data topic's and `__consumer_offsets`'s), and the controller is
   killed with -9 again while that runs. The command ends saying broker 1
   is safe to stop; no partition lists broker 1 and its data directory
   holds no partition log.
3. A reassignment cancelled halfway (its new replica throttled to a
   trickle) returns the partition to its original replicas.

Then: every acknowledged message is in the topic exactly once at its
acknowledged offset (chaos.check), the members processed every one of them
(groups.check_consumption) with no partition owned twice in a generation,
and the producer never got an error.
"""

from __future__ import annotations

import json
import subprocess
import time

from chaos import History, Workload, check, read_everything, wait_acks
from conftest import FJORD_BIN_DIR
from groups import (
    GROUP_FLAGS,
    MEMBER_SESSION_MS,
    MemberProcess,
    acked_positions,
    all_events,
    check_consumption,
    describe_events,
    double_owners,
    member_logs,
    offsets_topic_ready,
    owners_by_generation,
    produced_values,
    wait_processed,
    wait_stable,
)
from kafka_helpers import (
    controller_id,
    create_replicated_topic,
    fully_replicated,
    partition_states,
    wait_for,
    wait_for_partitions,
)

PARTITIONS = 6
TOPIC = "grow-shrink"
GROUP = "grow-shrink-g"
OFFSETS = "__consumer_offsets"
# Slow enough that the moves are still under way when the controller dies.
THROTTLE = "30000"
MOVE_TIMEOUT = 180.0


def fjord_ok(cluster, *args, timeout: float = 60.0) -> str:
    r = cluster.fjord(*args, timeout=timeout)
    assert r.returncode == 0, f"fjord {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def ongoing(cluster) -> set[tuple[str, int]]:
    """The partitions `fjord topics reassign --list` shows as moving."""
    out = fjord_ok(cluster, "topics", "reassign", "--list")
    moving = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 2 and cols[1].isdigit():
            moving.add((cols[0], int(cols[1])))
    return moving


def kill_controller_and_restart(cluster, history: History, why: str) -> int:
    victim = cluster.broker(controller_id(cluster))
    history.note(f"kill -9 controller {victim.broker_id} ({why})")
    victim.kill()
    time.sleep(1.0)
    victim.restart()
    history.note(f"broker {victim.broker_id} restarted")
    return victim.broker_id


def partition_dirs(broker) -> list[str]:
    logs = broker.data_dir / "logs"
    if not logs.is_dir():
        return []
    return sorted(p.name for p in logs.iterdir() if p.is_dir())


def test_grow_reassign_decommission_and_cancel_under_load(kafka_cluster, tmp_path):
    cluster = kafka_cluster(brokers=3, **GROUP_FLAGS)
    create_replicated_topic(cluster, TOPIC, PARTITIONS, 3, min_insync_replicas=2)
    offsets_topic_ready(cluster)
    history = History()
    workload = Workload(cluster.bootstrap, TOPIC, history, partitions=PARTITIONS, per_second=300)
    workload.start()
    members = [
        MemberProcess(
            tmp_path,
            f"member-{i}",
            cluster.bootstrap,
            GROUP,
            TOPIC,
            session_timeout_ms=MEMBER_SESSION_MS,
            max_poll_interval_ms=30000,
            max_seconds=600,
        ).start()
        for i in range(2)
    ]
    try:
        wait_stable(members, PARTITIONS, 60, "the group settled")
        wait_acks(history, 0, range(PARTITIONS), 300, 60, "before the cluster grows")

        # 1. A fourth broker, and half the partitions onto it.
        fourth = cluster.add_broker()
        cluster.wait_for_brokers()
        history.note(f"broker {fourth.broker_id} started")
        states = partition_states(cluster, TOPIC)
        moves = {p: [fourth.broker_id, *states[p].replicas[1:]] for p in range(0, PARTITIONS, 2)}
        plan = tmp_path / "grow.json"
        plan.write_text(json.dumps({
            "version": 1,
            "partitions": [{"topic": TOPIC, "partition": p, "replicas": r} for p, r in moves.items()],
        }))
        out = fjord_ok(cluster, "topics", "reassign", "--execute", str(plan), "--throttle", THROTTLE)
        assert f"started the reassignment of {len(moves)} partition(s)" in out, out
        history.note("reassignment onto the fourth broker started")
        wait_for(lambda: ongoing(cluster), 20, "the reassignment listed as in progress")
        kill_controller_and_restart(cluster, history, "while partitions move onto the fourth broker")
        wait_for(
            lambda: cluster.fjord("topics", "reassign", "--verify", str(plan), timeout=60).returncode == 0,
            MOVE_TIMEOUT,
            "the reassignment onto the fourth broker finished",
        )
        history.note("reassignment onto the fourth broker done")
        states = wait_for_partitions(cluster, TOPIC, fully_replicated, 60, "in sync after growing")
        for p, replicas in moves.items():
            assert list(states[p].replicas) == replicas, f"partition {p}: {states[p]}"

        # 2. Decommission broker 1 while the controller dies once more.
        command = [
            str(FJORD_BIN_DIR / "fjord"), "--bootstrap", cluster.bootstrap,
            "cluster", "decommission", "1", "--throttle", THROTTLE,
        ]
        history.note("decommission of broker 1 started")
        with open(tmp_path / "decommission.txt", "w") as log:
            decommission = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: ongoing(cluster), 30, "the decommission's moves listed")
            kill_controller_and_restart(cluster, history, "during the decommission")
            rc = decommission.wait(timeout=MOVE_TIMEOUT)
        finally:
            if decommission.poll() is None:
                decommission.kill()
        said = (tmp_path / "decommission.txt").read_text()
        assert rc == 0, f"decommission failed ({rc}):\n{said}"
        assert "broker 1 holds no replicas: it is safe to stop it" in said, said
        history.note("decommission of broker 1 done")
        for topic in (TOPIC, OFFSETS):
            states = wait_for_partitions(cluster, topic, fully_replicated, 60, "in sync after the decommission")
            holding = [p for p, s in states.items() if 1 in s.replicas]
            assert not holding, f"{topic} partitions still on broker 1: {holding}"
        one = cluster.broker(1)
        wait_for(lambda: not partition_dirs(one), 30, "broker 1's partition logs deleted")

        # 3. A move cancelled halfway: partition 1 gains broker 1 back, at a trickle.
        states = partition_states(cluster, TOPIC)
        original = list(states[1].replicas)
        stuck = tmp_path / "stuck.json"
        stuck.write_text(json.dumps({
            "version": 1,
            "partitions": [{"topic": TOPIC, "partition": 1, "replicas": [1, *original[1:]]}],
        }))
        fjord_ok(cluster, "topics", "reassign", "--execute", str(stuck), "--throttle", "1000")
        wait_for(lambda: (TOPIC, 1) in ongoing(cluster), 20, "the slow move listed")
        time.sleep(2.0)
        out = fjord_ok(cluster, "topics", "reassign", "--cancel", str(stuck))
        assert "cancelled the reassignment of 1 partition(s)" in out, out
        history.note("slow move cancelled")
        states = wait_for_partitions(cluster, TOPIC, fully_replicated, 60, "in sync after the cancel")
        assert sorted(states[1].replicas) == sorted(original), f"after the cancel: {states[1]}"
        wait_for(lambda: not partition_dirs(one), 30, "broker 1's partial copy deleted")
        # No throttle is left behind.
        configs = fjord_ok(cluster, "topics", "describe", TOPIC, "--all-configs")
        assert "DYNAMIC_TOPIC_CONFIG" not in "\n".join(
            line for line in configs.splitlines() if "throttled" in line
        ), configs

        # The producer and the group carry on.
        after = history.note("all moves done")
        wait_acks(history, after, range(PARTITIONS), 50, 60, "after the moves")
        left = workload.stop(flush_timeout=90)
        assert left == 0, f"{left} messages without a delivery report 90 s after the last send"
        sent, acks, failures = history.snapshot()
        wait_processed(members, acked_positions(acks), 90, "everything processed")
        for m in members:
            assert m.stop() == 0, f"{m.name} did not exit cleanly:\n{m.log_tail()}"
    except BaseException:
        print(member_logs(members))
        raise
    finally:
        workload._stop.set()
        for m in members:
            m.kill()
        print(f"events:\n{history.timeline()}")

    read, marks = read_everything(cluster, TOPIC, PARTITIONS, acks)
    result = check(acks, read, sent=sent)
    print(f"{result.summary()}\nhigh watermarks {marks}")
    result.assert_clean(f"{result.summary()}\nevents:\n{history.timeline()}")
    assert not failures, f"{len(failures)} failed deliveries, e.g. {failures[:5]}"

    events = all_events(members)
    produced, lost, _ = produced_values(cluster.bootstrap, TOPIC, PARTITIONS, acks)
    consumed = check_consumption(events, produced)
    report = f"{consumed.summary(examples=10)}\nmembership:\n{describe_events(events)}"
    assert not lost, f"acknowledged without an offset and not in the topic: {lost[:10]}"
    assert not double_owners(events), f"partitions with two owners in one generation\n{report}"
    assert None not in owners_by_generation(events), report
    assert not consumed.missing, f"acknowledged but never processed:\n{report}"
    assert not consumed.wrong_value, f"processed with another value:\n{report}"
    assert not consumed.reread_committed, f"an owner started before the committed offset:\n{report}"
    assert not consumed.skipped_ahead, f"an owner started past every offset read:\n{report}"
    assert not consumed.run_gaps, f"gaps within an ownership:\n{report}"


def test_topics_and_partitions_with_replicas_given_by_hand(kafka_cluster):
    """CreateTopics and CreatePartitions with replica assignments (kafka-topics
    --replica-assignment), through confluent-kafka's AdminClient: the replicas
    land exactly as given, and bad lists get INVALID_REPLICA_ASSIGNMENT."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewPartitions, NewTopic
    from kafka_helpers import admin_client, admin_results

    cluster = kafka_cluster(brokers=3)
    admin = admin_client(cluster.bootstrap)
    given = [[1, 2], [2, 3], [3, 1]]
    admin_results(admin.create_topics([NewTopic("by-hand", num_partitions=len(given), replica_assignment=given)]))
    states = wait_for_partitions(cluster, "by-hand", fully_replicated, 30, "created as given")
    assert [list(states[p].replicas) for p in range(3)] == given, states
    assert [states[p].leader for p in range(3)] == [1, 2, 3], states

    for bad in ([[1, 1]], [[1, 9]], [[1, 2], [3]]):
        futures = admin.create_topics([NewTopic("refused", num_partitions=len(bad), replica_assignment=bad)])
        try:
            futures["refused"].result(timeout=30)
            raise AssertionError(f"{bad} was accepted")
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, (bad, e)
    assert "refused" not in admin.list_topics(timeout=10).topics

    admin_results(admin.create_partitions([NewPartitions("by-hand", 4, replica_assignment=[[2, 1]])]))
    states = wait_for_partitions(cluster, "by-hand", lambda s: len(s) == 4 and fully_replicated(s), 30,
                                 "grown as given")
    assert list(states[3].replicas) == [2, 1], states
    futures = admin.create_partitions([NewPartitions("by-hand", 5, replica_assignment=[[2]])])
    try:
        futures["by-hand"].result(timeout=30)
        raise AssertionError("a new partition with one replica of a two-replica topic was accepted")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, e
