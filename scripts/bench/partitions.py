"""Driver of `scripts/bench/partitions`: how a 3-broker cluster's cost grows with the
number of partitions, with many clients, for Fjord and Apache Kafka in the same run.

Per system and round, on a fresh 3-broker cluster with default settings, for each
partition count (ascending):

1. Create topic `fleet-N` with N partitions, RF3 and min.insync.replicas=2, and time it
   until every partition has a leader and a full ISR in the metadata.
2. Measure the servers with the topic idle: CPU over `--idle` seconds, and memory.
3. `kafka-load fleet`: `--consumers` consumers join one group on the topic (time until the
   assignments cover every partition), then `--producers` producers send `--rate`
   records per second in all (`--size` bytes, acks=all, librdkafka defaults) for
   `--secs`; every acknowledged record must be consumed. Reported: the rate reached,
   produce and end-to-end latency, the servers' CPU over the whole client run and their
   memory after it.
4. Delete the topic and wait until it is gone.

Servers are the brokers and the coordinator for Fjord, the three combined
broker-and-controller JVMs for Kafka.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_bench import (  # noqa: E402
    BenchError,
    client_logger,
    commit_line,
    cpu_seconds,
    fmt,
    kafka_load,
    log as _log,
    machine_lines,
    median,
    print_rows,
    run_main,
    status_kib,
)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka_reference import add_side_by_side_args, ensure_jars, side_by_side  # noqa: E402

PROG = "partitions"
KAFKA_VERSION = "4.4.0"
TOPIC_TIMEOUT = 300.0


def log(message: str) -> None:
    _log(PROG, message)


def healthy(admin: AdminClient, topic: str, partitions: int) -> bool:
    md = admin.list_topics(topic, timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None or len(t.partitions) != partitions:
        return False
    return all(p.leader >= 0 and len(p.isrs) == 3 for p in t.partitions.values())


def create(admin: AdminClient, topic: str, partitions: int) -> float:
    started = time.monotonic()
    new = NewTopic(topic, num_partitions=partitions, replication_factor=3,
                   config={"min.insync.replicas": "2"})
    admin.create_topics([new], operation_timeout=TOPIC_TIMEOUT)[topic].result(timeout=TOPIC_TIMEOUT)
    while not healthy(admin, topic, partitions):
        if time.monotonic() - started > TOPIC_TIMEOUT:
            raise BenchError(f"{topic}: not every partition had a leader and 3 in-sync replicas "
                             f"within {TOPIC_TIMEOUT:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def delete(admin: AdminClient, topic: str) -> None:
    admin.delete_topics([topic], operation_timeout=TOPIC_TIMEOUT)[topic].result(timeout=TOPIC_TIMEOUT)
    deadline = time.monotonic() + TOPIC_TIMEOUT
    while topic in admin.list_topics(timeout=10).topics:
        if time.monotonic() > deadline:
            raise BenchError(f"{topic} still listed {TOPIC_TIMEOUT:.0f} s after its deletion")
        time.sleep(0.5)


def servers(pids: list[int]) -> tuple[float, int]:
    """CPU seconds and resident memory (KiB) of the server processes together."""
    return sum(cpu_seconds(p) for p in pids), sum(status_kib(p, "VmRSS") for p in pids)


def fleet(args, bootstrap: str, topic: str, log_path: Path) -> dict:
    fleet_args = ["fleet", "--bootstrap", bootstrap, "--topic", topic,
                  "--producers", str(args.producers), "--consumers", str(args.consumers),
                  "--rate", str(args.rate), "--size", str(args.size), "--secs", str(args.secs),
                  "--group", f"{topic}-group", "--timeout", str(args.client_timeout)]
    return kafka_load(Path(args.load), log_path, fleet_args, args.client_timeout + 60)


def run_system(args, system: str, bootstrap: str, pids: list[int], rdir: Path) -> dict:
    logger = client_logger(rdir / "admin.log", f"admin-{rdir.name}")
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": logger})
    results = {}
    for n in args.partitions:
        topic = f"fleet-{n}"
        log(f"{system}: creating {topic} ({n} partitions, RF3)")
        r = {"create_s": create(admin, topic, n)}
        time.sleep(3)
        cpu0, _ = servers(pids)
        time.sleep(args.idle)
        cpu1, rss = servers(pids)
        r["idle_cpu_pct"] = (cpu1 - cpu0) / args.idle * 100
        r["idle_rss_mib"] = rss / 1024
        log(f"{system}: {args.consumers} consumers and {args.producers} producers on {topic}")
        started = time.monotonic()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r["fleet"] = fleet(args, bootstrap, topic, rdir / "clients.log")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.monotonic() - started
        r["client_cpu_pct"] = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / wall * 100
        cpu2, rss = servers(pids)
        r["load_cpu_pct"] = (cpu2 - cpu1) / wall * 100
        r["load_rss_mib"] = rss / 1024
        f = r["fleet"]
        log(f"{system} {n}: settle {f['settle_secs']:.1f} s, {f['msgs_per_sec']:.0f} msgs/s, "
            f"e2e p99 {f['e2e']['p99_ms']:.1f} ms, server CPU {r['load_cpu_pct']:.0f}%")
        delete(admin, topic)
        results[n] = r
    return results


def print_table(args, root: Path, work: Path, results: dict[str, list[dict]]) -> None:
    def med(system: str, n: int, get) -> float | None:
        return median([get(r[n]) for r in results[system]])

    rows_spec = [
        ("topic create s", lambda r: r["create_s"], 1),
        ("group settle s", lambda r: r["fleet"]["settle_secs"], 1),
        ("rebalances to settle", lambda r: r["fleet"]["rebalances_to_settle"], 0),
        (f"msgs/s acknowledged (of {args.rate})", lambda r: r["fleet"]["msgs_per_sec"], 0),
        ("unacknowledged after 60 s", lambda r: r["fleet"]["unacked"], 0),
        ("produce p50 ms", lambda r: r["fleet"]["ack"]["p50_ms"], 1),
        ("produce p99 ms", lambda r: r["fleet"]["ack"]["p99_ms"], 1),
        ("end-to-end p50 ms", lambda r: r["fleet"]["e2e"]["p50_ms"], 1),
        ("end-to-end p99 ms", lambda r: r["fleet"]["e2e"]["p99_ms"], 1),
        ("server CPU idle %", lambda r: r["idle_cpu_pct"], 1),
        ("server CPU under load %", lambda r: r["load_cpu_pct"], 0),
        ("client CPU under load %", lambda r: r["client_cpu_pct"], 0),
        ("server RSS idle MiB", lambda r: r["idle_rss_mib"], 0),
        ("server RSS after load MiB", lambda r: r["load_rss_mib"], 0),
    ]
    print()
    print(f"partitions benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}, fjord {commit_line(root)}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(f"workload:  3 brokers; per partition count a topic RF3 (min.insync.replicas=2); "
          f"{args.consumers} consumers in one group, then {args.producers} producers "
          f"sending {args.rate} x {args.size} B per second in all for {args.secs:.0f} s "
          f"(kafka-load fleet: librdkafka defaults, acks=all); medians of {args.rounds} round(s)")
    print("servers:   fjord = 3 brokers + 1 coordinator; kafka = 3 combined broker+controller JVMs "
          f"(Apache Kafka {KAFKA_VERSION}, KRaft, heap 1 GiB each); CPU in % of one core, summed")
    print()
    systems = list(results)
    header = ["metric"]
    for n in args.partitions:
        header += [f"{s} {n}" for s in systems]
        if len(systems) == 2:
            header.append(f"ratio {n}")
    rows = []
    for name, get, digits in rows_spec:
        row = [name]
        for n in args.partitions:
            vals = [med(s, n, get) for s in systems]
            row += [fmt(v, digits) for v in vals]
            if len(systems) == 2:
                f, k = vals
                row.append(fmt(f / k if f and k else None, 2))
        rows.append(row)
    print_rows(header, rows)
    print()
    print("ratio = fjord/kafka; lower is better except for msgs/s; every acknowledged record was consumed;")
    print("the clients (one kafka-load process, 200 librdkafka instances) share the two CPUs with the servers")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_side_by_side_args(p, rounds=1)
    p.add_argument("--load", required=True)
    p.add_argument("--partitions", type=lambda s: sorted({int(x) for x in s.split(",")}), default=[100, 1000])
    p.add_argument("--producers", type=int, default=100)
    p.add_argument("--consumers", type=int, default=100)
    p.add_argument("--rate", type=int, default=2000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--secs", type=float, default=30)
    p.add_argument("--idle", type=float, default=10)
    p.add_argument("--client-timeout", type=float, default=600)
    args = p.parse_args()
    root, work = Path(args.root), Path(args.work)
    lib = None if args.no_kafka else ensure_jars(root, KAFKA_VERSION, log)
    results = side_by_side(PROG, args, lib, log,
                           lambda system, bootstrap, pids, rdir: run_system(args, system, bootstrap, pids, rdir))
    print_table(args, root, work, results)
    return 0


if __name__ == "__main__":
    run_main(main, log)
