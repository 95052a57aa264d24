"""Driver of `scripts/bench/commits`: offset-commit latency against acks=all produce
latency on a 3-broker cluster, for Fjord and for Apache Kafka in the same run.

Per system and round, on a fresh cluster with default settings (the topics RF3 with
min.insync.replicas=2; `__consumer_offsets` RF3 with the broker's default min.insync, 1
in both systems):

1. `produce`: one confluent-kafka producer (acks=all, linger.ms=0) sends one message at a
   time and waits for its acknowledgement; each round trip is a sample.
2. `commit`: one consumer commits synchronously, one offset at a time; each commit is a
   sample. The first commit (which creates `__consumer_offsets`) and a warm-up are not
   measured.
3. `async`: a group member reads pre-produced messages and commits asynchronously after
   every one (what made librdkafka consumers fall out of their group when commits were
   slow); reported are messages per second until the last commit is acknowledged, and how
   often the member was assigned its partition again (a rejoin).

The table shows medians over the rounds, and the ratios commit/produce and Fjord/Kafka.
Every wait has a deadline and every loop a bound.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_bench import (  # noqa: E402
    BenchError,
    client_logger,
    commit_line,
    flag_defaults,
    fmt,
    log as _log,
    machine_lines,
    median,
    print_rows,
    run_main,
    percentile,
)
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka_reference import DEFAULT_VERSION, add_side_by_side_args, ensure_jars, side_by_side  # noqa: E402

PROG = "commits"
TOPIC = "bench-latency"
ASYNC_TOPIC = "bench-async"
WAIT = 60.0


def log(message: str) -> None:
    _log(PROG, message)


def create_topics(bootstrap: str, logger) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": logger})
    topics = [
        NewTopic(t, 1, 3, config={"min.insync.replicas": "2"}) for t in (TOPIC, ASYNC_TOPIC)
    ]
    for name, future in admin.create_topics(topics, operation_timeout=30).items():
        try:
            future.result(timeout=WAIT)
        except KafkaException as e:
            raise BenchError(f"cannot create {name}: {e}") from e


def produce_samples(bootstrap: str, samples: int, warmup: int, logger) -> list[float]:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "logger": logger}
    )
    out: list[float] = []
    errors: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    deadline = time.monotonic() + WAIT * 5
    for i in range(warmup + samples):
        start = time.monotonic()
        producer.produce(TOPIC, b"x" * 100, on_delivery=on_delivery)
        if producer.flush(WAIT) != 0:
            raise BenchError("a produce was not acknowledged within 60 s")
        if i >= warmup:
            out.append(time.monotonic() - start)
        if time.monotonic() > deadline:
            raise BenchError("the produce phase took more than 5 minutes")
    if errors:
        raise BenchError(f"{len(errors)} produces failed, e.g. {errors[0]}")
    return out


def commit_samples(bootstrap: str, samples: int, warmup: int, logger) -> list[float]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-committer",
            "enable.auto.commit": False,
            "logger": logger,
        }
    )
    out: list[float] = []
    try:
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        deadline = time.monotonic() + WAIT * 5
        for i in range(1 + warmup + samples):
            start = time.monotonic()
            consumer.commit(offsets=[TopicPartition(TOPIC, 0, i)], asynchronous=False)
            if i > warmup:
                out.append(time.monotonic() - start)
            if time.monotonic() > deadline:
                raise BenchError("the commit phase took more than 5 minutes")
    finally:
        consumer.close()
    return out


def async_phase(bootstrap: str, messages: int, logger) -> tuple[float, int]:
    """(messages per second until the last commit is acknowledged, extra assignments)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "logger": logger})
    for i in range(messages):
        producer.produce(ASYNC_TOPIC, b"%d" % i)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(WAIT) != 0:
        raise BenchError("the async phase's messages were not all acknowledged")
    assignments: list[int] = []
    committed_ok = [0]
    # When the last offset's commit was acknowledged (timed here, not after the poll
    # that delivered this callback returns).
    done_at: list[float] = []

    def on_commit(err, partitions):
        if err is None:
            committed_ok[0] = max(committed_ok[0], max((p.offset for p in partitions), default=0))
            if committed_ok[0] >= messages and not done_at:
                done_at.append(time.monotonic())

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-async-committer",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "on_commit": on_commit,
            "logger": logger,
        }
    )
    try:
        consumer.subscribe([ASYNC_TOPIC], on_assign=lambda c, ps: assignments.append(len(ps)))
        seen = 0
        start = None
        deadline = time.monotonic() + WAIT * 5
        while committed_ok[0] < messages and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            if start is None:
                start = time.monotonic()
            seen += 1
            consumer.commit(message=msg, asynchronous=True)
        if committed_ok[0] < messages or start is None or not done_at:
            raise BenchError(
                f"async commits: {seen} read, offset {committed_ok[0]} committed of {messages} in 5 minutes"
            )
        elapsed = done_at[0] - start
    finally:
        consumer.close()
    return messages / elapsed, max(0, len(assignments) - 1)


def run_system(name: str, bootstrap: str, args, logger) -> dict:
    log(f"{name}: creating topics")
    create_topics(bootstrap, logger)
    log(f"{name}: produce round trips")
    produce = sorted(produce_samples(bootstrap, args.samples, args.warmup, logger))
    log(f"{name}: synchronous commits")
    commit = sorted(commit_samples(bootstrap, args.samples, args.warmup, logger))
    log(f"{name}: asynchronous commits after every message")
    rate, rejoins = async_phase(bootstrap, args.async_messages, logger)
    return {
        "produce_p50": percentile(produce, 50),
        "produce_p99": percentile(produce, 99),
        "commit_p50": percentile(commit, 50),
        "commit_p99": percentile(commit, 99),
        "async_rate": rate,
        "rejoins": rejoins,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_side_by_side_args(p)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--async-messages", type=int, default=5000)
    p.add_argument("--kafka-version", default=DEFAULT_VERSION)
    args = p.parse_args()
    root, work = Path(args.root), Path(args.work)
    logger = client_logger(work / "clients.log", "librdkafka")
    lib = None if args.no_kafka else ensure_jars(root, args.kafka_version, log)
    results = side_by_side(
        PROG, args, lib, log, lambda system, bootstrap, _pids, _rdir: run_system(system, bootstrap, args, logger)
    )
    print_table(args, root, work, results)
    return 0


def print_table(args, root: Path, work: Path, results: dict[str, list[dict]]) -> None:
    def med(system: str, key: str) -> float | None:
        return median([r[key] for r in results[system] if r[key] is not None])

    def ms(v):
        return fmt(None if v is None else v * 1000, 2)

    print()
    print(f"commit latency benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}, fjord {commit_line(root)}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(
        f"workload:  3 brokers, topics RF3 with min.insync.replicas=2, __consumer_offsets RF3; "
        f"{args.samples} samples per phase after {args.warmup} unmeasured; "
        f"{args.async_messages} messages with an async commit each; medians of {args.rounds} rounds"
    )
    print("fjord:     " + " ".join(flag_defaults(Path(args.bin_dir) / "fjord-broker", ["replica-fetch-wait-max-ms"])))
    if "kafka" in results:
        print(f"kafka:     Apache Kafka {args.kafka_version} (KRaft, 3 combined nodes, heap 1 GiB each), defaults")
    print()
    header = ["system", "produce p50 ms", "produce p99 ms", "commit p50 ms", "commit p99 ms",
              "commit/produce p50", "async msgs/s", "rejoins"]
    rows = []
    for system in results:
        pp50, cp50 = med(system, "produce_p50"), med(system, "commit_p50")
        rows.append([
            system, ms(pp50), ms(med(system, "produce_p99")), ms(cp50), ms(med(system, "commit_p99")),
            fmt(cp50 / pp50 if pp50 and cp50 else None, 2), fmt(med(system, "async_rate")),
            str(max((r["rejoins"] for r in results[system]), default=0)),
        ])
    if "kafka" in results:
        def ratio(key):
            f, k = med("fjord", key), med("kafka", key)
            return fmt(f / k if f and k else None, 2)
        rows.append(["fjord/kafka", ratio("produce_p50"), ratio("produce_p99"), ratio("commit_p50"),
                     ratio("commit_p99"), "", ratio("async_rate"), ""])
    print_rows(header, rows)
    print()
    print("target: a commit takes about as long as an acks=all produce (commit/produce p50 near 1);")
    print("lower latency and higher msgs/s are better; rejoins is the most in one round (want 0)")


if __name__ == "__main__":
    run_main(main, log)
