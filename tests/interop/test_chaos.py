"""Seeded fault injection on a replicated topic while an idempotent acks=all
producer writes to it without pause.

Three brokers, one topic with four partitions, replication factor 3,
min.insync.replicas=2, automatic leader rebalancing every few seconds.
Each round picks one fault at random:

- kill -9, then restart, of a partition's leader, one of its followers, or
  the controller;
- SIGSTOP of one of them for a random time (some shorter than the session
  timeout, some longer), then SIGCONT;
- a plain restart (SIGTERM, which must exit 0, then start).

After each fault the cluster must heal within a bound: every broker
registered, every replica back in its partition's ISR, and the producer
acknowledging on every partition. At the end the topic is read back and
the checker (chaos.check) reports acknowledged messages not read back at
their offset, offsets with two values and values stored more than once;
all three must be zero.

Duplicates must be zero because of the producer: one idempotent session
whose message timeout is longer than the test never abandons a message,
so every resend carries the batch's original producer id and sequence,
and the broker keeps producer state in the replicated log, so whichever
replica leads after a failover recognises a batch it already has.

Environment: FJORD_CHAOS_SEED (default: a random seed, printed; run again
with it to repeat the same choices), FJORD_CHAOS_ROUNDS (default 10),
FJORD_CHAOS_BUDGET_S (default 240: no new round starts after that many
seconds).
"""

from __future__ import annotations

import os
import random
import time

from chaos import History, Workload, apply_broker_fault, check, read_everything, stored_stamps
from conftest import BROKER_SESSION_TIMEOUT_MS
from kafka_helpers import (
    cluster_metadata,
    create_replicated_topic,
    fully_replicated,
    wait_for,
    wait_for_partitions,
)

SEED = int(os.environ.get("FJORD_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
ROUNDS = int(os.environ.get("FJORD_CHAOS_ROUNDS", "10"))
BUDGET = float(os.environ.get("FJORD_CHAOS_BUDGET_S", "240"))
SESSION = BROKER_SESSION_TIMEOUT_MS / 1000
PARTITIONS = 4
REPLICATION = 3
MIN_INSYNC = 2
TOPIC = "chaos"
BROKER_FLAGS = {
    "replica_lag_time_max_ms": 3000,
    "auto_leader_rebalance": "true",
    "leader_imbalance_check_interval_ms": 5000,
}
# Every broker back, every ISR full, after a fault.
HEAL = 45.0
FAULTS = ("kill", "pause", "restart")
TARGETS = ("leader", "follower", "controller")


def pick_target(rng: random.Random, cluster, kind: str):
    """(broker, description) for a target kind, from the current state."""
    md = cluster_metadata(cluster, [TOPIC])
    states = md.topics[TOPIC]
    partition = rng.randrange(PARTITIONS)
    state = states[partition]
    if kind == "leader":
        return cluster.broker(state.leader), f"leader of partition {partition}"
    if kind == "follower":
        followers = sorted(set(state.replicas) - {state.leader})
        return cluster.broker(rng.choice(followers)), f"a follower of partition {partition}"
    return cluster.broker(md.controller), "the controller"


def heal(cluster, history: History, round_no: int) -> None:
    """Every broker registered, every replica in sync, and fresh
    acknowledgements on every partition."""
    dead = [f"{b.kind} (exit code {b.process.returncode})" for b in cluster.brokers if not b.running]
    assert not dead, f"round {round_no}: brokers exited on their own: {dead}"
    cluster.wait_for_brokers(timeout=HEAL)
    wait_for_partitions(cluster, TOPIC, fully_replicated, HEAL, f"fully in sync after round {round_no}")
    healed = history.note(f"round {round_no}: healed")
    wait_for(
        lambda: all(len(history.acks_after(healed, p)) >= 20 for p in range(PARTITIONS)),
        HEAL,
        f"acknowledgements on every partition after round {round_no}",
    )


def test_chaos(kafka_cluster):
    print(f"FJORD_CHAOS_SEED={SEED} FJORD_CHAOS_ROUNDS={ROUNDS}")
    rng = random.Random(SEED)
    began = time.monotonic()
    cluster = kafka_cluster(brokers=3, **BROKER_FLAGS)
    create_replicated_topic(cluster, TOPIC, PARTITIONS, REPLICATION, min_insync_replicas=MIN_INSYNC)
    history = History()
    workload = Workload(cluster.bootstrap, TOPIC, history, partitions=PARTITIONS, per_second=500)
    workload.start()
    rounds_run = 0
    try:
        heal(cluster, history, 0)
        for round_no in range(1, ROUNDS + 1):
            if time.monotonic() - began > BUDGET:
                print(f"time budget of {BUDGET:.0f}s used up after {rounds_run} rounds")
                break
            fault = rng.choice(FAULTS)
            kind = rng.choice(TARGETS)
            broker, what = pick_target(rng, cluster, kind)
            name = f"round {round_no}: broker {broker.broker_id} ({what})"
            # Half of the pauses outlast the session timeout.
            apply_broker_fault(rng, broker, fault, name, history, SESSION - 1, (SESSION + 1, SESSION + 5))
            heal(cluster, history, round_no)
            rounds_run += 1
            time.sleep(rng.uniform(0.5, 2.0))
    finally:
        print(f"events:\n{history.timeline()}")

    history.note("stopping the producer")
    left = workload.stop(flush_timeout=90)
    assert left == 0, f"{left} messages without a delivery report 90 s after the last send"
    sent, acks, failures = history.snapshot()
    read, marks = read_everything(cluster, TOPIC, PARTITIONS, acks)
    result = check(acks, read, sent=sent)
    result.classify_duplicates(stored_stamps(cluster, TOPIC))
    elapsed = time.monotonic() - began
    print(
        f"seed {SEED}: {rounds_run} rounds in {elapsed:.0f}s, {len(sent)} sent, "
        f"{len(failures)} failed deliveries {sorted({f.error for f in failures})}\n"
        f"high watermarks {marks}\n{result.summary(examples=10)}"
    )
    report = f"seed {SEED}\n{result.summary(examples=10)}"
    assert rounds_run >= 1, "no round ran"
    result.assert_clean(report)
    # Every error librdkafka can retry, it retries for the whole message
    # timeout (longer than the test): a failed delivery is an error the
    # client may not retry, which none of these faults should cause.
    assert not failures, f"{len(failures)} failed deliveries, e.g. {failures[:5]}"
