"""Driver of `scripts/bench/replication --kafka`: RF3 against RF1 on Fjord and, in the same
run, on Apache Kafka (KRaft, three combined broker-and-controller nodes), with the same
native client, so that the ratio this machine allows can be read beside ours.

Per round and system, on a fresh cluster with default settings (`side_by_side`: the order
of the systems alternates between rounds):

1. creates `rf1` (replication factor 1) and `rf3` (replication factor 3,
   `min.insync.replicas=2`), 3 partitions each, and waits until every partition has a
   leader and a full ISR;
2. for each topic, alternating which goes first from round to round: `sync` (so that no
   phase starts with the previous phase's dirty pages still to write back), then
   `kafka-load produce` of a tenth of `--messages` unmeasured and `--messages` measured
   (`acks=all`, every partition, librdkafka's defaults otherwise), timed to the last
   delivery report.

The table has each system's RF1 and RF3 messages/s, the servers' and the client's CPU, the
RF3/RF1 ratio, and the Fjord/Kafka ratios, as medians over the rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import broker_bench  # noqa: E402
from broker_bench import (BenchError, commit_line, fmt, machine_lines, median,  # noqa: E402
                          native_phase, parse_producer_config, print_rows)
from kafka_reference import add_side_by_side_args, ensure_jars, side_by_side  # noqa: E402
from perftools import KAFKA_VERSION, create_topic  # noqa: E402

PROG = "replication-bench"
TOPICS = [("rf1", 1), ("rf3", 3)]


def log(message: str) -> None:
    broker_bench.log(PROG, message)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_side_by_side_args(p)
    p.add_argument("--load", required=True, help="the kafka-load binary")
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--max-secs", type=float, default=600.0)
    p.add_argument("--producer-config", action="append", default=[])
    args = p.parse_args()
    if args.messages < 10:
        raise BenchError("--messages must be at least 10")
    root, work = Path(args.root), Path(args.work)
    lib = None if args.no_kafka else ensure_jars(root, KAFKA_VERSION, log)
    config = {"acks": "all", **parse_producer_config(args.producer_config)}
    runs: dict[str, int] = {}

    def run(system: str, bootstrap: str, pids: list[int], rdir: Path) -> dict:
        for topic, replicas in TOPICS:
            create_topic(bootstrap, topic, replicas)
        # This system's round number decides which topic goes first.
        order = TOPICS if runs.get(system, 0) % 2 == 0 else list(reversed(TOPICS))
        runs[system] = runs.get(system, 0) + 1
        result = {}
        for topic, _ in order:
            started = time.monotonic()
            os.sync()
            log(f"{system}: {topic}: sync took {time.monotonic() - started:.1f} s")
            client_log = rdir / "client.log"
            native_phase(Path(args.load), client_log, bootstrap, topic, args.messages // 10,
                         args.size, config, pids, args.max_secs)
            phase = native_phase(Path(args.load), client_log, bootstrap, topic, args.messages,
                                 args.size, config, pids, args.max_secs)
            log(f"{system}: {topic}: {phase.delivered} msgs in {phase.elapsed:.2f} s, "
                f"{fmt(phase.msgs_per_sec)} msgs/s")
            result[topic] = phase
        return result

    results = side_by_side(PROG, args, lib, log, run)
    print_table(args, root, work, results)
    return 0


def print_table(args, root: Path, work: Path, results: dict[str, list[dict]]) -> None:
    def med(system: str, topic: str, fn):
        return median([v for v in (fn(r[topic]) for r in results[system]) if v is not None])

    def rate(r):
        return r.msgs_per_sec

    def ratio(system: str):
        return median([r["rf3"].msgs_per_sec / r["rf1"].msgs_per_sec for r in results[system]
                       if r["rf1"].msgs_per_sec and r["rf3"].msgs_per_sec])

    print()
    print(f"Replication benchmark against Apache Kafka, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"fjord {commit_line(root)}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(f"workload:  kafka-load produce (librdkafka), acks=all, {args.messages} records of "
          f"{args.size} B per phase after {args.messages // 10} unmeasured, 3 partitions, rf3 with "
          f"min.insync.replicas=2; sync before each phase; medians of {args.rounds} rounds")
    print("fjord:     3 fjord-brokers and a fjord-coordinator, default flags")
    if "kafka" in results:
        print(f"kafka:     Apache Kafka {KAFKA_VERSION}, KRaft, 3 combined broker+controller nodes, heap 1 GiB each")
    print()
    header = ["system", "RF1 msgs/s", "RF3 msgs/s", "RF3/RF1", "RF3/RF1 by round",
              "servers CPU RF1/RF3 %", "client CPU RF1/RF3 %"]
    def cpu(key):
        return lambda r: 100 * getattr(r, key) / r.elapsed if r.elapsed else None

    rows = []
    for system in results:
        by_round = " ".join(fmt(r["rf3"].msgs_per_sec / r["rf1"].msgs_per_sec, 2)
                            for r in results[system] if r["rf1"].msgs_per_sec and r["rf3"].msgs_per_sec)
        rows.append([system, fmt(med(system, "rf1", rate)), fmt(med(system, "rf3", rate)),
                     fmt(ratio(system), 2), by_round,
                     f"{fmt(med(system, 'rf1', cpu('brokers_cpu')))} / {fmt(med(system, 'rf3', cpu('brokers_cpu')))}",
                     f"{fmt(med(system, 'rf1', cpu('client_cpu')))} / {fmt(med(system, 'rf3', cpu('client_cpu')))}"])
    if "kafka" in results:
        def over(topic):
            f, k = med("fjord", topic, rate), med("kafka", topic, rate)
            return fmt(f / k if f and k else None, 2)
        fr, kr = ratio("fjord"), ratio("kafka")
        rows.append(["fjord/kafka", over("rf1"), over("rf3"), fmt(fr / kr if fr and kr else None, 2),
                     "", "", ""])
    print_rows(header, rows)
    print()
    print("target: fjord RF3/RF1 >= 0.5 (servers' CPU: every server process of the system, in % of one core)")


if __name__ == "__main__":
    broker_bench.run_main(main, log)
