"""Driver of `scripts/bench/perftools`: Apache Kafka's own `kafka-producer-perf-test` and
`kafka-consumer-perf-test` (the 4.4.0 tools jar) against a 3-broker Fjord cluster and, in
the same run, against a 3-node Apache Kafka 4.4 cluster in KRaft mode.

Per round and system, on a fresh cluster with default settings, for each case (100 B and
1 KiB records, each to an RF1 and an RF3 topic of 3 partitions; RF3 topics have
min.insync.replicas=2 on both systems):

1. `kafka-producer-perf-test --num-records N --record-size S --throughput -1` with
   `acks=all` (the tool's other producer settings are the Java client's defaults): its
   summary line gives records/s, MB/s and the p50/p99 latency of each send.
2. `kafka-consumer-perf-test --num-records N` reads the topic back: MB/s and records/s.

Memory: the servers' summed RSS (`VmRSS`; Fjord: three brokers and the coordinator,
Kafka: its three combined broker-and-controller JVMs, 1 GiB heap each as Kafka's start
script sets) once idle after start, and the largest sum sampled every 200 ms while the
tools ran (loaded).

The table shows medians over the rounds and the Fjord/Kafka ratios, with the targets: at
least Kafka's throughput, at most half its p99 latency and a tenth of its memory. Every
wait has a deadline and every loop a bound.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import broker_bench  # noqa: E402
from broker_bench import BenchError, commit_line, fmt, machine_lines, median, print_rows  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka_reference import add_side_by_side_args, ensure_jars, side_by_side  # noqa: E402

PROG = "perftools"
KAFKA_VERSION = "4.4.0"
TOOL_TIMEOUT = 600.0
# The tools' JVMs: what bin/kafka-run-class.sh gives them (256 MiB heap), G1.
TOOL_JVM = ["-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]
PRODUCER_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th"
)


def log(message: str) -> None:
    broker_bench.log(PROG, message)


def rss_kib(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """The largest summed RSS of `pids`, sampled every 200 ms until stopped (bounded)."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        for _ in range(int(3 * TOOL_TIMEOUT * 5)):
            self.peak = max(self.peak, sum(rss_kib(p) for p in self.pids))
            if self.done.wait(0.2):
                return


def tool(lib: Path, main: str, args: list[str], log_path: Path) -> str:
    cmd = ["java", *TOOL_JVM, "-cp", f"{lib}/*", main, *args]
    with open(log_path, "ab") as err:
        err.write(f"=== {' '.join(cmd)}\n".encode())
        err.flush()
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=TOOL_TIMEOUT)
    if result.returncode != 0:
        raise BenchError(f"{main} exited {result.returncode}: {result.stdout[-2000:]}; see {log_path}")
    return result.stdout


def create_topic(bootstrap: str, name: str, replicas: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    config = {"min.insync.replicas": "2"} if replicas >= 3 else {}
    futures = admin.create_topics([NewTopic(name, 3, replicas, config=config)], operation_timeout=60)
    for f in futures.values():
        f.result(timeout=90)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=5).topics.get(name)
        if md and not md.error and len(md.partitions) == 3 and all(
            p.leader >= 0 and len(p.isrs) == replicas for p in md.partitions.values()
        ):
            return
        time.sleep(0.2)
    raise BenchError(f"topic {name} not ready within 60 s")


def run_case(lib: Path, bootstrap: str, pids: list[int], size: int, replicas: int, records: int,
             work: Path) -> dict:
    topic = f"perf-{size}b-rf{replicas}"
    create_topic(bootstrap, topic, replicas)
    sampler = RssSampler(pids)
    sampler.start()
    try:
        out = tool(
            lib, "org.apache.kafka.tools.ProducerPerformance",
            ["--topic", topic, "--num-records", str(records), "--record-size", str(size),
             "--throughput", "-1", "--command-property", "acks=all",
             "--command-property", f"bootstrap.servers={bootstrap}"],
            work / "tools.log",
        )
        m = PRODUCER_LINE.search(out)
        if not m or int(m.group(1)) != records:
            raise BenchError(f"no producer summary for {records} records in: {out[-1000:]}")
        consumed = tool(
            lib, "org.apache.kafka.tools.ConsumerPerformance",
            ["--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(records),
             "--timeout", "120000"],
            work / "tools.log",
        )
    finally:
        sampler.done.set()
        sampler.join(5)
    lines = [line for line in consumed.splitlines() if line.strip()]
    header = [h.strip() for h in lines[-2].split(",")]
    values = [v.strip() for v in lines[-1].split(",")]
    row = dict(zip(header, values))
    if int(row.get("data.consumed.in.nMsg", "0")) < records:
        raise BenchError(f"the consumer perf test read {row.get('data.consumed.in.nMsg')} of {records}")
    return {
        "produce_rate": float(m.group(2)),
        "produce_mb": float(m.group(3)),
        "p50": float(m.group(6)),
        "p99": float(m.group(8)),
        "consume_mb": float(row["fetch.MB.sec"]),
        "consume_rate": float(row["fetch.nMsg.sec"]),
        "loaded_kib": sampler.peak,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_side_by_side_args(p)
    p.add_argument("--small-records", type=int, default=2_000_000)
    p.add_argument("--large-records", type=int, default=1_000_000)
    args = p.parse_args()
    root, work = Path(args.root), Path(args.work)
    lib = ensure_jars(root, KAFKA_VERSION, log)
    cases = [(100, 1, args.small_records), (100, 3, args.small_records),
             (1024, 1, args.large_records), (1024, 3, args.large_records)]

    def run(system: str, bootstrap: str, pids: list[int], rdir: Path) -> dict:
        time.sleep(5)
        result = {"idle_kib": sum(rss_kib(x) for x in pids)}
        for size, replicas, records in cases:
            log(f"{system}: {size} B records, RF{replicas}")
            result[(size, replicas)] = run_case(lib, bootstrap, pids, size, replicas, records, rdir)
        return result

    results = side_by_side(PROG, args, lib, log, run)
    print_table(args, root, work, cases, results)
    return 0


def print_table(args, root: Path, work: Path, cases, results: dict[str, list[dict]]) -> None:
    def med(system, case, key):
        return median([r[case][key] for r in results[system]])

    print()
    print(f"Kafka perf tools benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}, fjord {commit_line(root)}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(
        f"workload:  kafka-producer-perf-test and kafka-consumer-perf-test {KAFKA_VERSION}, acks=all, "
        f"--throughput -1, 3 partitions, RF3 topics with min.insync.replicas=2; "
        f"{args.small_records} records of 100 B, {args.large_records} of 1 KiB; medians of {args.rounds} rounds"
    )
    print("fjord:     3 fjord-brokers and a fjord-coordinator, default flags (fsync never, as Kafka)")
    if "kafka" in results:
        print(f"kafka:     Apache Kafka {KAFKA_VERSION}, KRaft, 3 combined broker+controller nodes, heap 1 GiB each")
    print()
    header = ["case", "system", "produce rec/s", "produce MB/s", "p50 ms", "p99 ms", "consume MB/s", "consume rec/s"]
    rows = []
    for size, replicas, _ in cases:
        case = (size, replicas)
        name = f"{'100 B' if size == 100 else '1 KiB'} RF{replicas}"
        for system in results:
            rows.append([name, system, fmt(med(system, case, "produce_rate")), fmt(med(system, case, "produce_mb"), 1),
                         fmt(med(system, case, "p50")), fmt(med(system, case, "p99")),
                         fmt(med(system, case, "consume_mb"), 1), fmt(med(system, case, "consume_rate"))])
        if "kafka" in results:
            def ratio(key):
                f, k = med("fjord", case, key), med("kafka", case, key)
                return fmt(f / k if f and k else None, 2)
            rows.append([name, "fjord/kafka", ratio("produce_rate"), ratio("produce_mb"), ratio("p50"),
                         ratio("p99"), ratio("consume_mb"), ratio("consume_rate")])
    print_rows(header, rows, left=2)
    print()
    mem_header = ["system", "idle RSS MiB", "loaded RSS MiB"]
    mem_rows = []
    for system in results:
        idle = median([r["idle_kib"] for r in results[system]])
        loaded = median([max(r[(s, rf)]["loaded_kib"] for s, rf, _ in cases) for r in results[system]])
        mem_rows.append([system, fmt(idle / 1024), fmt(loaded / 1024)])
    if "kafka" in results:
        fi = median([r["idle_kib"] for r in results["fjord"]])
        ki = median([r["idle_kib"] for r in results["kafka"]])
        fl = median([max(r[(s, rf)]["loaded_kib"] for s, rf, _ in cases) for r in results["fjord"]])
        kl = median([max(r[(s, rf)]["loaded_kib"] for s, rf, _ in cases) for r in results["kafka"]])
        mem_rows.append(["fjord/kafka", fmt(fi / ki, 3), fmt(fl / kl, 3)])
    print_rows(mem_header, mem_rows)
    print()
    print("targets: fjord/kafka throughput >= 1, p99 <= 0.5, memory <= 0.1")


if __name__ == "__main__":
    broker_bench.run_main(main, log)
