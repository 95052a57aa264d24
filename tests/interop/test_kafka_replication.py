"""Three brokers, replication factor 3, min.insync.replicas=2: what an
acks=all producer was told survives the loss of brokers, whichever way
they go (kill -9, SIGSTOP past the session timeout, SIGTERM), and the
cluster heals (followers catch up, the ISR refills, preferred leaders
come back).

The producer is confluent-kafka (librdkafka), idempotent with acks=all,
sending unique values; every delivery report is recorded (chaos.History),
and at the end the whole topic is read back and held against it
(chaos.check): every acknowledged value at its acknowledged offset, no
offset with two values, no value stored twice, no gaps.

No value may be stored twice: one idempotent producer session, with a
message timeout longer than the test, never gives up on a message, so
every resend carries the batch's original producer id and sequence; the
broker keeps producer state in the replicated log, so whichever replica
leads recognises a resent batch it already has.
"""

from __future__ import annotations

import socket
import time

from chaos import History, Workload, check, finish, read_everything, wait_acks
from confluent_kafka import KafkaError
from conftest import BROKER_SESSION_TIMEOUT_MS
from kafka_helpers import (
    cluster_metadata,
    controller_id,
    create_replicated_topic,
    fully_replicated,
    preferred_leaders,
    produce,
    produce_request,
    read_produce_response,
    wait_for,
    wait_for_partitions,
)

SESSION = BROKER_SESSION_TIMEOUT_MS / 1000
# A follower that has not caught up for this long leaves the ISR; short, so
# that acks=all writes wait only briefly for a dead follower.
LAG_MS = 3000
# From a kill to a new leader in Metadata: the session timeout, then the
# controller's election and its propagation (debug builds, two cores).
ELECTION = SESSION + 8
# From a restart (or SIGCONT) to being back in every ISR.
REJOIN = 40.0
PARTITIONS = 3
# Every test's brokers. No automatic rebalance unless a test asks for it,
# so leaders stay where the faults put them.
FLAGS = {"replica_lag_time_max_ms": LAG_MS, "auto_leader_rebalance": "false"}


def start(kafka_cluster, **flags):
    return kafka_cluster(brokers=3, **{**FLAGS, **flags})


def topic_rf3(cluster, topic: str, partitions: int = PARTITIONS):
    """An RF3 topic with min.insync.replicas=2, every replica in sync."""
    return create_replicated_topic(cluster, topic, partitions, 3, min_insync_replicas=2)


def test_kill_9_partition_leader_during_production(kafka_cluster):
    """kill -9 of a partition's leader (not the controller) while an
    acks=all producer writes to every partition: within the session
    timeout another ISR member leads, with a higher leader epoch, and
    Metadata lists the dead broker's replicas as offline; the producer
    carries on without a failed delivery; everything acknowledged is read
    back exactly once at its acknowledged offset."""
    cluster = start(kafka_cluster)
    topic = "kill-leader"
    states = topic_rf3(cluster, topic)
    controller = controller_id(cluster)
    partition, state = next((p, s) for p, s in sorted(states.items()) if s.leader != controller)
    victim = state.leader

    history = History()
    workload = Workload(cluster.bootstrap, topic, history, partitions=PARTITIONS).start()
    wait_acks(history, 0, range(PARTITIONS), 200, 30, "before the kill")
    killed = history.note(f"kill -9 broker {victim}, leader of partition {partition}")
    cluster.broker(victim).kill()

    after = wait_for_partitions(
        cluster,
        topic,
        lambda s: s[partition].leader not in (-1, victim)
        and all(victim in p.offline for p in s.values()),
        ELECTION,
        f"partition {partition} led by a broker other than {victim}, and {victim} offline",
    )
    history.note(f"partition {partition} led by {after[partition].leader}")
    assert after[partition].leader in state.isr
    assert after[partition].leader_epoch > state.leader_epoch
    # Production resumes: acknowledgements after the kill, on every
    # partition, the dead leader's one included.
    wait_acks(history, killed, range(PARTITIONS), 300, 60, "after the kill")
    _, _, failures = finish(cluster, workload, history, topic, PARTITIONS)
    assert not failures, f"{len(failures)} failed deliveries, e.g. {failures[:5]}"


def test_kill_9_controller_during_production(kafka_cluster):
    """kill -9 of the controller: another broker becomes controller within
    the session timeout and moves the dead one's leaderships; a partition
    led by a surviving broker keeps its leader; production carries on and
    nothing acknowledged is lost."""
    cluster = start(kafka_cluster)
    topic = "kill-controller"
    states = topic_rf3(cluster, topic)
    controller = controller_id(cluster)
    watched = next(p for p, s in sorted(states.items()) if s.leader != controller)
    watched_leader = states[watched].leader

    history = History()
    workload = Workload(cluster.bootstrap, topic, history, partitions=PARTITIONS).start()
    wait_acks(history, 0, range(PARTITIONS), 200, 30, "before the kill")
    killed = history.note(f"kill -9 broker {controller}, the controller")
    cluster.broker(controller).kill()

    def another_controller():
        named = cluster_metadata(cluster, []).controller
        alive = {b.broker_id for b in cluster.reachable}
        return named if named != controller and named in alive else None

    new_controller = wait_for(another_controller, ELECTION, f"a controller other than {controller}")
    history.note(f"broker {new_controller} is the controller")
    after = wait_for_partitions(
        cluster,
        topic,
        lambda s: all(p.leader not in (-1, controller) for p in s.values()),
        ELECTION,
        f"no partition led by the dead controller {controller}",
    )
    assert after[watched].leader == watched_leader, (
        f"partition {watched}: leader {watched_leader} was alive, yet now {after[watched].leader}"
    )
    wait_acks(history, killed, range(PARTITIONS), 300, 60, "after the kill")
    _, _, failures = finish(cluster, workload, history, topic, PARTITIONS)
    assert not failures, f"{len(failures)} failed deliveries, e.g. {failures[:5]}"


def test_sigstop_leader_past_session_timeout(kafka_cluster):
    """SIGSTOP of a partition's leader for longer than the session timeout:
    it is replaced; after SIGCONT it acknowledges nothing that the new
    leader does not keep (a client that still takes it for the leader has
    acks=all Produce requests waiting in its socket when it runs again),
    the producer loses nothing and no offset gets two values, it rejoins
    the ISR, and once
    `fjord cluster rebalance-leaders` makes it leader again it serves
    exactly the log that the new leader served."""
    cluster = start(kafka_cluster)
    topic = "paused-leader"
    states = topic_rf3(cluster, topic)
    controller = controller_id(cluster)
    partition, state = next((p, s) for p, s in sorted(states.items()) if s.leader != controller)
    victim = cluster.broker(state.leader)
    assert state.leader == state.preferred, f"partition {partition}: {state}"

    history = History()
    workload = Workload(cluster.bootstrap, topic, history, partitions=PARTITIONS).start()
    wait_acks(history, 0, range(PARTITIONS), 200, 30, "before the pause")
    # A client that still takes the paused broker for the leader: a
    # connection opened now, whose acks=all Produce requests go into the
    # socket while the broker is frozen, so that the broker reads them the
    # moment it runs again, before it can have heard of its replacement.
    stale = socket.create_connection((victim.host, victim.port), timeout=20)

    paused = history.note(f"SIGSTOP broker {victim.broker_id}, leader of partition {partition}")
    victim.pause()
    after = wait_for_partitions(
        cluster,
        topic,
        lambda s: s[partition].leader not in (-1, victim.broker_id),
        ELECTION,
        f"partition {partition} led by a broker other than the paused {victim.broker_id}",
    )
    replaced = history.note(f"partition {partition} led by {after[partition].leader}")
    assert after[partition].leader in state.isr
    assert after[partition].leader_epoch > state.leader_epoch
    # The producer moves on to the new leader while the old one is frozen.
    wait_acks(history, replaced, [partition], 100, 30, "while the old leader is stopped")
    # Frozen well past its session timeout, whatever the waits took.
    time.sleep(max(0.0, paused + SESSION + 2 - time.monotonic()))

    stale_batches = {n: [b"stale-%d-%d" % (n, i) for i in range(5)] for n in range(1, 4)}
    for n, values in stale_batches.items():
        stale.sendall(produce_request(n, topic, partition, values, acks=-1, timeout_ms=5000))
        for value in values:
            history.record_sent(value)
    victim.resume()
    resumed = history.note(f"SIGCONT broker {victim.broker_id}")
    answers = []
    try:
        for _ in stale_batches:
            answer = read_produce_response(stale)
            if answer is None:
                break
            answers.append(answer)
    except OSError as e:  # no answer in time: nothing acknowledged
        answers.append(e)
    finally:
        stale.close()
    for answer in answers:
        if isinstance(answer, tuple):
            correlation, error, base = answer
            for i, value in enumerate(stale_batches[correlation]):
                if error == 0:
                    history.record_ack(partition, base + i, value)
                else:
                    history.record_failure(value, partition, KafkaError(error).name())
    history.note(f"the paused broker answered the stale client: {answers}")
    print(f"stale client's requests to the resumed broker: {answers}")

    wait_for_partitions(
        cluster,
        topic,
        lambda s: victim.broker_id in s[partition].isr and fully_replicated(s),
        REJOIN,
        f"broker {victim.broker_id} back in the ISR",
    )
    history.note(f"broker {victim.broker_id} back in the ISR")
    wait_acks(history, resumed, range(PARTITIONS), 200, 30, "after SIGCONT")
    _, first_read, failures = finish(cluster, workload, history, topic, PARTITIONS)
    workload_failures = [f for f in failures if not f.value.startswith(b"stale-")]
    assert not workload_failures, f"failed deliveries: {workload_failures[:5]}"
    _, acks, _ = history.snapshot()

    # The paused broker's log: make it the leader again and read it.
    out = cluster.fjord("cluster", "rebalance-leaders")
    assert out.returncode == 0, f"rebalance-leaders: {out.returncode}\n{out.stdout}\n{out.stderr}"
    wait_for_partitions(
        cluster,
        topic,
        lambda s: s[partition].leader == victim.broker_id and preferred_leaders(s),
        15,
        f"broker {victim.broker_id} leading partition {partition} again",
    )
    second_read, _ = read_everything(cluster, topic, PARTITIONS, acks)
    mine = sorted(r for r in second_read if r[0] == partition)
    theirs = sorted(r for r in first_read if r[0] == partition)
    assert mine == theirs, (
        f"partition {partition} as broker {victim.broker_id} serves it differs from the "
        f"new leader's: {len(mine)} vs {len(theirs)} records, first difference at "
        f"{next(((a, b) for a, b in zip(mine + [None], theirs + [None]) if a != b), None)}"
    )


def test_deposed_leader_truncates_its_divergent_tail(kafka_cluster):
    """A leader holding records its followers never fetched (written with
    acks=1 while both followers were frozen and had no fetch waiting) is
    frozen past the session timeout. A follower takes over and writes
    other values at those offsets. When the old leader runs again it
    must cut that tail and copy the new leader's log: made leader again
    by `fjord cluster rebalance-leaders`, it serves exactly what the new
    leader served."""
    cluster = start(kafka_cluster)
    topic = "divergent"
    states = topic_rf3(cluster, topic)
    controller = controller_id(cluster)
    partition, state = next((p, s) for p, s in sorted(states.items()) if s.leader != controller)
    leader = cluster.broker(state.leader)
    followers = [cluster.broker(b) for b in state.replicas if b != state.leader]
    assert state.leader == state.preferred

    def send(values, **config):
        delivered, failed = produce(
            ",".join(b.address for b in cluster.reachable),
            topic,
            [(None, v, None, partition) for v in values],
            **{"acks": "all", "enable.idempotence": True, **config},
        )
        assert not failed, f"{len(failed)} failed, e.g. {failed[:3]}"
        return [(r.partition, r.offset, r.value) for r in delivered]

    acked = send([b"before-%d" % i for i in range(1000)])
    stale = socket.create_connection((leader.host, leader.port), timeout=20)
    for f in followers:
        f.pause()
    # Well past the time a leader holds a follower's fetch (500 ms by
    # default), also on a busy machine, so no fetch is waiting to carry the
    # next write to a follower.
    time.sleep(3.0)
    tail = [b"tail-%d" % i for i in range(20)]
    stale.sendall(produce_request(1, topic, partition, tail, acks=1, timeout_ms=5000))
    answer = read_produce_response(stale)
    stale.close()
    assert answer is not None and answer[1] == 0, f"acks=1 write to the leader: {answer}"
    tail_at = {(partition, answer[2] + i): v for i, v in enumerate(tail)}
    leader.pause()
    paused = time.monotonic()
    for f in followers:
        f.resume()

    after = wait_for_partitions(
        cluster,
        topic,
        lambda s: s[partition].leader in {f.broker_id for f in followers},
        ELECTION,
        f"partition {partition} led by one of {[f.broker_id for f in followers]}",
    )
    assert after[partition].leader_epoch > state.leader_epoch
    acked += send([b"after-%d" % i for i in range(1000)])
    time.sleep(max(0.0, paused + SESSION + 1 - time.monotonic()))
    leader.resume()
    wait_for_partitions(
        cluster, topic, fully_replicated, REJOIN, f"broker {leader.broker_id} back in the ISR"
    )
    acked += send([b"rejoined-%d" % i for i in range(200)])

    first_read, _ = read_everything(cluster, topic, PARTITIONS, acked)
    result = check(acked, first_read)
    print(result.summary())
    assert result.not_read == 0 and not result.conflicts, result.summary()
    assert not result.duplicates and not result.gaps, result.summary()
    first = sorted(r for r in first_read if r[0] == partition)
    # The premise: the new leader has other values where the tail was.
    stored = {(p, o): v for p, o, v in first}
    overwritten = [pos for pos, v in tail_at.items() if pos in stored and stored[pos] != v]
    assert overwritten, f"the new leader's log does not diverge from the old tail {tail_at}"

    out = cluster.fjord("cluster", "rebalance-leaders")
    assert out.returncode == 0, f"rebalance-leaders: {out.returncode}\n{out.stdout}\n{out.stderr}"
    wait_for_partitions(
        cluster,
        topic,
        lambda s: s[partition].leader == leader.broker_id,
        15,
        f"broker {leader.broker_id} leading partition {partition} again",
    )
    second_read, _ = read_everything(cluster, topic, PARTITIONS, acked)
    second = sorted(r for r in second_read if r[0] == partition)
    kept = [(p, o, v) for p, o, v in second if v.startswith(b"tail-")]
    assert not kept, f"broker {leader.broker_id} kept its divergent tail: {kept[:5]}"
    assert second == first, (
        f"partition {partition} as broker {leader.broker_id} serves it differs from the "
        f"new leader's: {len(second)} vs {len(first)} records, first difference at "
        f"{next(((a, b) for a, b in zip(second + [None], first + [None]) if a != b), None)}"
    )


def test_two_of_three_brokers_down(kafka_cluster):
    """With both followers of a partition dead, its leader stays, the ISR
    shrinks to the leader alone, and acks=all writes get
    NOT_ENOUGH_REPLICAS (min.insync.replicas=2) while everything
    acknowledged before is still readable. Once the two are back, the ISR
    refills and acks=all writes succeed again."""
    cluster = start(kafka_cluster)
    topic = "two-down"
    states = topic_rf3(cluster, topic, partitions=1)
    leader = states[0].leader
    others = [b for b in cluster.brokers if b.broker_id != leader]

    before, failed = produce(
        cluster.bootstrap,
        topic,
        [(None, b"before-%d" % i) for i in range(3000)],
        **{"acks": "all", "enable.idempotence": True},
    )
    assert not failed and len(before) == 3000

    for b in others:
        b.kill()
    shrunk = wait_for_partitions(
        cluster,
        topic,
        lambda s: s[0].isr == (leader,),
        SESSION + LAG_MS / 1000 + 15,
        f"the ISR down to the leader {leader} alone",
    )
    assert shrunk[0].leader == leader

    delivered, refused = produce(
        cluster.broker(leader).address,
        topic,
        [(None, b"refused-%d" % i) for i in range(20)],
        timeout=60,
        **{"acks": "all", "retries": 0, "message.timeout.ms": 30000, "request.timeout.ms": 20000},
    )
    assert not delivered, f"acknowledged with the ISR below min.insync.replicas: {delivered[:5]}"
    assert len(refused) == 20
    errors = {err.code() for _, err in refused}
    assert errors == {KafkaError.NOT_ENOUGH_REPLICAS}, f"errors: {[e for _, e in refused[:5]]}"

    acked_before = [(r.partition, r.offset, r.value) for r in before]
    read, _ = read_everything(cluster, topic, 1, acked_before, timeout=10)
    result = check(acked_before, read)
    assert result.not_read == 0 and not result.conflicts, result.summary()

    for b in others:
        b.restart()
    cluster.wait_for_brokers()
    wait_for_partitions(
        cluster, topic, lambda s: len(s[0].isr) == 3, REJOIN, "the ISR back to 3 replicas"
    )
    after, failed = produce(
        cluster.bootstrap,
        topic,
        [(None, b"after-%d" % i) for i in range(3000)],
        **{"acks": "all", "retries": 0},
    )
    assert not failed, f"{len(failed)} failed, e.g. {failed[:3]}"
    acked = [(r.partition, r.offset, r.value) for r in before + after]
    read, _ = read_everything(cluster, topic, 1, before + after)
    result = check(acked, read)
    print(result.summary())
    assert result.not_read == 0, result.summary()
    assert not result.conflicts and not result.duplicates and not result.gaps, result.summary()
    # Nothing refused was stored.
    assert not [r for r in read if r[2].startswith(b"refused-")]


def _lose_one_broker_and_bring_it_back(cluster, topic: str):
    """Write, kill -9 a broker that is no partition's controller and is
    some partition's preferred leader, write more without it, restart it
    and wait until it is back in every ISR. Returns (the broker, every
    acknowledged (partition, offset, value), the states now)."""
    states = topic_rf3(cluster, topic)
    assert {s.preferred for s in states.values()} == {1, 2, 3}, (
        f"replicas not spread round-robin: {states}"
    )
    assert preferred_leaders(states)
    controller = controller_id(cluster)
    victim = cluster.broker(next(s.leader for s in states.values() if s.leader != controller))
    first, failed = produce(
        cluster.bootstrap,
        topic,
        [(None, b"first-%d" % i, None, i % PARTITIONS) for i in range(3000)],
        **{"acks": "all", "enable.idempotence": True},
    )
    assert not failed
    victim.kill()
    wait_for_partitions(
        cluster,
        topic,
        lambda s: all(p.leader not in (-1, victim.broker_id) for p in s.values())
        and all(victim.broker_id not in p.isr for p in s.values()),
        SESSION + LAG_MS / 1000 + 15,
        f"broker {victim.broker_id} out of every leadership and ISR",
    )
    second, failed = produce(
        cluster.bootstrap,
        topic,
        [(None, b"second-%d" % i, None, i % PARTITIONS) for i in range(3000)],
        **{"acks": "all", "enable.idempotence": True},
    )
    assert not failed
    victim.restart()
    states = wait_for_partitions(
        cluster, topic, fully_replicated, REJOIN, f"broker {victim.broker_id} back in every ISR"
    )
    acked = [(r.partition, r.offset, r.value) for r in first + second]
    return victim, acked, states


def _read_and_check(cluster, topic: str, acked):
    read, _ = read_everything(cluster, topic, PARTITIONS, acked)
    result = check(acked, read)
    print(result.summary())
    assert result.not_read == 0, result.summary()
    assert not result.conflicts and not result.duplicates and not result.gaps, result.summary()


def test_restarted_broker_catches_up_and_cli_rebalances_leaders(kafka_cluster):
    """A broker that missed writes catches up after a restart and rejoins
    every ISR, but leads nothing until `fjord cluster rebalance-leaders`
    moves leadership back to the preferred replicas; then it serves the
    writes it missed."""
    cluster = start(kafka_cluster)
    topic = "catch-up"
    victim, acked, states = _lose_one_broker_and_bring_it_back(cluster, topic)
    assert all(s.leader != victim.broker_id for s in states.values()), (
        f"broker {victim.broker_id} leads again without a rebalance: {states}"
    )
    out = cluster.fjord("cluster", "rebalance-leaders")
    assert out.returncode == 0, f"rebalance-leaders: {out.returncode}\n{out.stdout}\n{out.stderr}"
    wait_for_partitions(cluster, topic, preferred_leaders, 15, "every partition led by its preferred replica")
    # The broker now leads its preferred partition: the read of that
    # partition comes from its log.
    _read_and_check(cluster, topic, acked)


def test_automatic_leader_rebalance(kafka_cluster):
    """With --auto-leader-rebalance and a short check interval, the
    controller hands leadership back to the preferred replica by itself
    once the restarted broker is in sync."""
    cluster = start(kafka_cluster, auto_leader_rebalance="true", leader_imbalance_check_interval_ms=1000)
    topic = "auto-rebalance"
    victim, acked, _ = _lose_one_broker_and_bring_it_back(cluster, topic)
    wait_for_partitions(
        cluster, topic, preferred_leaders, 20, "every partition back with its preferred leader"
    )
    _read_and_check(cluster, topic, acked)


def test_controlled_shutdown_of_a_leader(kafka_cluster):
    """SIGTERM to a partition leader during production: its leaderships
    move away first, so no delivery report carries an error; the broker
    exits 0; everything acknowledged is read back."""
    cluster = start(kafka_cluster)
    topic = "controlled"
    states = topic_rf3(cluster, topic)
    controller = controller_id(cluster)
    victim = cluster.broker(next(s.leader for s in states.values() if s.leader != controller))
    led = [p for p, s in states.items() if s.leader == victim.broker_id]

    history = History()
    workload = Workload(cluster.bootstrap, topic, history, partitions=PARTITIONS).start()
    wait_acks(history, 0, range(PARTITIONS), 200, 30, "before the shutdown")
    stopping = history.note(f"SIGTERM broker {victim.broker_id}, leader of {led}")
    code = victim.terminate(timeout=30)
    stopped = history.note(f"broker {victim.broker_id} exited with {code}")
    assert code == 0
    wait_for_partitions(
        cluster,
        topic,
        lambda s: all(p.leader not in (-1, victim.broker_id) for p in s.values()),
        5,
        f"no partition led by the stopped broker {victim.broker_id}",
    )
    wait_acks(history, stopped, range(PARTITIONS), 300, 30, "after the shutdown")
    # Leaderships moved while the broker still served, so the stream
    # hardly pauses; had they moved only once it was gone, acks=all writes
    # would have waited for the cluster to notice it missing.
    stall = history.longest_ack_gap(stopping, time.monotonic())
    print(f"longest wait for an acknowledgement around the shutdown: {stall:.2f}s")
    assert stall < SESSION, f"acknowledgements stopped for {stall:.1f}s around the shutdown"
    _, _, failures = finish(cluster, workload, history, topic, PARTITIONS)
    assert not failures, f"{len(failures)} failed deliveries, e.g. {failures[:5]}"
