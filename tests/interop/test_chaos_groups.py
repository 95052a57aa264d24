"""Seeded fault injection under a consumer group: brokers (the group's
coordinator among them) are killed, frozen and restarted while members
consume and commit.

Three brokers; a 6-partition topic (RF3, min.insync.replicas=2) written
by an idempotent acks=all producer (chaos.Workload); a group of three
confluent-kafka members, each a process of its own (group_member.py)
that writes down every record it processes, then commits synchronously,
and commits what it processed in on_revoke before a partition moves on.
The `__consumer_offsets` topic is RF3 too, and automatic leader
rebalancing moves coordinators back to their preferred brokers now and
then (a coordinator that unloads its groups while they are in use).

Each round picks one fault at random:

- kill -9, then restart, of the group's coordinator (the leader of its
  `__consumer_offsets` partition), of a data partition's leader, of the
  controller, or of a follower of the coordinator's partition;
- SIGSTOP of one of them, some shorter and some longer than the broker
  session timeout (the longer ones also outlast the members' session
  timeout when the coordinator is the one frozen), then SIGCONT;
- a clean restart (SIGTERM, which must exit 0, then start);
- kill -9 of a member, and a new member in its place.

After each fault the cluster must heal within a bound: every broker
registered, every replica in sync, the producer acknowledging on every
partition, the live members owning every partition in one generation,
everything acknowledged so far processed, and committed.

The checks, at the end (groups.py):

- every acknowledged message was processed by some member, with its
  value: nothing past a committed offset is skipped;
- each time a member took a partition over, it started at or after the
  last offset committed for it (a commit the broker accepted is never
  lost, even across coordinator failovers) and no further than one past
  the highest offset processed so far; within an ownership, offsets
  follow each other without gaps;
- no partition had two owners in one generation (the generation is
  read in on_assign from the consumer's group metadata);
- once the members are done, the committed offsets are the log ends.

Records processed more than once are allowed (at-least-once: a member
killed, or a commit that failed while the coordinator moved) and counted.

Environment: FJORD_CHAOS_SEED (default: random, printed),
FJORD_CHAOS_ROUNDS (default 10), FJORD_CHAOS_BUDGET_S (default 170: no
new round starts after that many seconds; with the default rounds, at
least 5 must run).
"""

from __future__ import annotations

import os
import random
import time

from chaos import History, Workload, apply_broker_fault
from confluent_kafka import KafkaException
from conftest import BROKER_SESSION_TIMEOUT_MS
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
    owners_by_generation,
    wait_processed,
    committed_offsets,
    offsets_partition,
    offsets_topic_ready,
    produced_values,
    wait_stable,
)
from kafka_helpers import (
    cluster_metadata,
    create_replicated_topic,
    fully_replicated,
    high_watermarks,
    wait_for,
    wait_for_partitions,
)

SEED = int(os.environ.get("FJORD_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
ROUNDS = int(os.environ.get("FJORD_CHAOS_ROUNDS", "10"))
BUDGET = float(os.environ.get("FJORD_CHAOS_BUDGET_S", "170"))
SESSION = BROKER_SESSION_TIMEOUT_MS / 1000
MEMBER_SESSION = MEMBER_SESSION_MS / 1000
PARTITIONS = 6
MEMBERS = 3
TOPIC = "chaos-groups"
GROUP = "chaos-groups-g"
OFFSETS = "__consumer_offsets"
BROKER_FLAGS = {
    **GROUP_FLAGS,
    "auto_leader_rebalance": "true",
    "leader_imbalance_check_interval_ms": 5000,
}
# Every broker back, every ISR full, after a fault.
HEAL = 45.0
# The group settled again and caught up: the members' sessions may have
# to expire first, then a rebalance, then the backlog.
GROUP_HEAL = 60.0
FAULTS = ("kill", "pause", "restart", "member")
# The coordinator twice: it is the one this test is about.
TARGETS = ("coordinator", "coordinator", "leader", "controller", "follower")


def pick_target(rng: random.Random, cluster, kind: str):
    """(broker, description) for a target kind, from the current state."""
    md = cluster_metadata(cluster, [TOPIC, OFFSETS])
    coordinator_partition = md.topics[OFFSETS][offsets_partition(GROUP)]
    if kind == "coordinator":
        return cluster.broker(coordinator_partition.leader), "the group coordinator"
    if kind == "follower":
        followers = sorted(set(coordinator_partition.replicas) - {coordinator_partition.leader})
        return cluster.broker(rng.choice(followers)), "a follower of the coordinator's partition"
    if kind == "leader":
        partition = rng.randrange(PARTITIONS)
        return cluster.broker(md.topics[TOPIC][partition].leader), f"leader of partition {partition}"
    return cluster.broker(md.controller), "the controller"


class Group:
    """The members, live and dead, each with its own events file."""

    def __init__(self, workdir, bootstrap: str) -> None:
        self.workdir, self.bootstrap = workdir, bootstrap
        self.all: list[MemberProcess] = []

    def add(self) -> MemberProcess:
        member = MemberProcess(
            self.workdir,
            f"member-{len(self.all)}",
            self.bootstrap,
            GROUP,
            TOPIC,
            session_timeout_ms=MEMBER_SESSION_MS,
            max_poll_interval_ms=30000,
            max_seconds=600,
        ).start()
        self.all.append(member)
        return member

    @property
    def live(self) -> list[MemberProcess]:
        return [m for m in self.all if m.running]


def committed_now(cluster) -> dict[int, int] | None:
    """The group's committed offsets, or None while the admin request
    fails (a coordinator moving)."""
    try:
        return committed_offsets(cluster.bootstrap, GROUP, TOPIC, PARTITIONS)
    except KafkaException:
        return None


def heal(cluster, history: History, group: Group, round_no: int) -> None:
    """Every broker registered, every replica in sync, fresh
    acknowledgements on every partition; the live members own every
    partition in one generation and have processed everything
    acknowledged so far."""
    dead = [f"{b.kind} (exit code {b.process.returncode})" for b in cluster.brokers if not b.running]
    assert not dead, f"round {round_no}: brokers exited on their own: {dead}"
    cluster.wait_for_brokers(timeout=HEAL)
    for topic in (TOPIC, OFFSETS):
        wait_for_partitions(cluster, topic, fully_replicated, HEAL, f"fully in sync after round {round_no}")
    healed = history.note(f"round {round_no}: brokers healed")
    wait_for(
        lambda: all(len(history.acks_after(healed, p)) >= 10 for p in range(PARTITIONS)),
        HEAL,
        f"acknowledgements on every partition after round {round_no}",
    )
    stable = wait_stable(group.live, PARTITIONS, GROUP_HEAL, f"the group settled after round {round_no}")
    _, acks, _ = history.snapshot()
    wait_processed(group.all, acked_positions(acks), GROUP_HEAL, f"caught up after round {round_no}")
    # And commits go through the (possibly new) coordinator again.
    ends = {p: 0 for p in range(PARTITIONS)}
    for p, o in acked_positions(acks):
        ends[p] = max(ends[p], o + 1)
    wait_for(
        lambda: (c := committed_now(cluster)) and all(o >= ends[p] for p, o in c.items()),
        GROUP_HEAL,
        f"commits past {ends} after round {round_no}",
    )
    history.note(f"round {round_no}: group settled {stable}, caught up and committed")


def test_chaos_groups(kafka_cluster, tmp_path):
    print(f"FJORD_CHAOS_SEED={SEED} FJORD_CHAOS_ROUNDS={ROUNDS}")
    rng = random.Random(SEED)
    began = time.monotonic()
    cluster = kafka_cluster(brokers=3, **BROKER_FLAGS)
    create_replicated_topic(cluster, TOPIC, PARTITIONS, 3, min_insync_replicas=2)
    offsets_topic_ready(cluster)
    history = History()
    workload = Workload(cluster.bootstrap, TOPIC, history, partitions=PARTITIONS, per_second=150)
    workload.start()
    group = Group(tmp_path, cluster.bootstrap)
    for _ in range(MEMBERS):
        group.add()
    rounds_run = 0
    try:
        heal(cluster, history, group, 0)
        for round_no in range(1, ROUNDS + 1):
            if time.monotonic() - began > BUDGET:
                print(f"time budget of {BUDGET:.0f}s used up after {rounds_run} rounds")
                break
            fault = rng.choice(FAULTS)
            if fault == "member":
                victim = rng.choice(group.live)
                history.note(f"round {round_no}: kill -9 {victim.name}, start a new member")
                victim.kill()
                time.sleep(rng.uniform(0.0, 2.0))
                history.note(f"round {round_no}: {group.add().name} started")
            else:
                broker, what = pick_target(rng, cluster, rng.choice(TARGETS))
                name = f"round {round_no}: broker {broker.broker_id} ({what})"
                # Half of the pauses outlast the broker session timeout,
                # and those outlast the members' sessions too.
                apply_broker_fault(
                    rng, broker, fault, name, history, SESSION - 1, (MEMBER_SESSION + 1, MEMBER_SESSION + 4)
                )
            heal(cluster, history, group, round_no)
            rounds_run += 1
            time.sleep(rng.uniform(0.5, 2.0))

        history.note("stopping the producer")
        left = workload.stop(flush_timeout=90)
        assert left == 0, f"{left} messages without a delivery report 90 s after the last send"
        _, acks, failures = history.snapshot()
        wait_processed(group.all, acked_positions(acks), GROUP_HEAL, "everything processed")
        marks = high_watermarks(cluster.bootstrap, TOPIC, range(PARTITIONS))
        wait_for(
            lambda: committed_now(cluster) == marks,
            30,
            f"committed offsets at the log ends {marks}",
        )
        for m in group.live:
            assert m.stop() == 0, f"{m.name} did not exit cleanly:\n{m.log_tail()}"
    except BaseException:
        print(member_logs(group.all))
        raise
    finally:
        workload._stop.set()
        for m in group.all:
            m.kill()
        print(f"events:\n{history.timeline()}")

    events = all_events(group.all)
    produced, lost, unplaced = produced_values(cluster.bootstrap, TOPIC, PARTITIONS, acks)
    result = check_consumption(events, produced)
    owners = owners_by_generation(events)
    twice = double_owners(events)
    kinds = [e["ev"] for e in events]
    elapsed = time.monotonic() - began
    print(
        f"seed {SEED}: {rounds_run} rounds in {elapsed:.0f}s; {len(acks)} acknowledged; "
        f"generations {min(owners)}..{max(owners)}; "
        f"{kinds.count('lost')} partition sets lost, {kinds.count('commit_failed')} failed commits, "
        f"{kinds.count('error')} consumer errors; {unplaced} acknowledged without an offset\n"
        f"{result.summary(examples=10)}"
    )
    report = f"seed {SEED}\n{result.summary(examples=10)}\nmembership:\n{describe_events(events)}"
    assert rounds_run >= min(ROUNDS, 5), f"only {rounds_run} rounds ran within the budget"
    assert None not in owners, f"assignments whose generation could not be read:\n{report}"
    assert not twice, f"partitions with two owners in one generation: {twice}\n{report}"
    assert not lost, f"acknowledged without an offset and not in the topic: {lost[:10]}"
    assert not result.missing, f"acknowledged but never processed:\n{report}"
    assert not result.wrong_value, f"processed with another value:\n{report}"
    assert not result.reread_committed, f"an owner started before the committed offset:\n{report}"
    assert not result.skipped_ahead, f"an owner started past every offset read:\n{report}"
    assert not result.run_gaps, f"gaps within an ownership:\n{report}"
    # Every error librdkafka can retry, it retries for the whole message
    # timeout (longer than the test).
    assert not failures, f"{len(failures)} failed deliveries, e.g. {failures[:5]}"
