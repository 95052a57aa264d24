"""Driver of `scripts/bench/throughput`: one partition, one librdkafka client, against one
Fjord broker (with its coordinator), tansu 0.6.0 with its in-memory storage, and a single
Apache Kafka 4.4 node (KRaft, broker and controller in one JVM), in the same run.

Per round and system, on a freshly started server, each case with its own RF1 topic of one
partition and `kafka-load` (librdkafka defaults, `acks=all` for producers):

1. idle: the server's `VmRSS` 3 s after it answers Metadata (Fjord: broker and
   coordinator apart);
2. produce 100 B: `--small` records as fast as the client takes them, until the last
   delivery report;
3. consume 100 B: five times, a fresh consumer reads those records back from offset 0
   (assign, no group), from the assignment to the last record; the median run counts,
   with what the client's statistics say about its Fetch requests (count, bytes per
   response, round trips) and how many runs stalled (librdkafka's prefetch queue filled
   up and it paused fetching for `fetch.queue.backoff.ms`);
4. produce 1 KiB: `--large` records;
5. latency: 5,000 records/s of 1 KiB for 10 s with `linger.ms=0`, the time from each
   send to its delivery report (p50, p99).

The table has the medians over the rounds, Fjord's ratios to each peer and the targets of
the performance work (scripts/bench/README.md). Every wait has a deadline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import broker_bench  # noqa: E402
from broker_bench import BenchError, Cluster, commit_line, fmt, machine_lines, median, print_rows, status_kib  # noqa: E402
from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka_reference import KafkaReference, add_side_by_side_args, ensure_jars, free_port  # noqa: E402

PROG = "throughput"
KAFKA_VERSION = "4.4.0"
TANSU_VERSION = "0.6.0"
CLIENT_TIMEOUT = 600.0
STARTUP_TIMEOUT = 60.0
LATENCY_RATE = 5000
LATENCY_SECS = 10
# Consumer runs per round: librdkafka's throughput is bimodal (see the README), so one
# run says little.
CONSUME_RUNS = 5


def log(message: str) -> None:
    broker_bench.log(PROG, message)


class Tansu:
    """One tansu broker with in-memory storage on a free loopback port."""

    def __init__(self, binary: Path, workdir: Path, pids_file: Path):
        self.binary = binary
        self.workdir = workdir
        self.pids_file = pids_file
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True)
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.workdir / "server.log", "ab") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        with open(self.pids_file, "a") as f:
            f.write(f"{self.process.pid} {os.path.realpath(self.binary)}\n")
        wait_for_metadata(self.bootstrap, "tansu", lambda: self.process.poll())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def wait_for_metadata(bootstrap: str, what: str, exited) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        code = exited()
        if code is not None:
            raise BenchError(f"{what} exited with {code}")
        try:
            if admin.list_topics(timeout=2).brokers:
                return
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not answer Metadata within {STARTUP_TIMEOUT:.0f} s")
        time.sleep(0.3)


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], operation_timeout=30)
    futures[name].result(timeout=60)
    # Wait until the partition has a leader that takes writes.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=5)
        t = md.topics.get(name)
        if t and t.error is None and t.partitions and all(p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.2)
    raise BenchError(f"topic {name} has no leader after 30 s")


def load(binary: Path, log_path: Path, *args: str) -> dict:
    return broker_bench.kafka_load(binary, log_path, list(args), CLIENT_TIMEOUT)


def run_system(args, system: str, bootstrap: str, pids: dict[str, int], rdir: Path) -> dict:
    load_bin, log_path = Path(args.load), rdir / "clients.log"
    time.sleep(3)
    result: dict = {f"idle_{name}_kib": status_kib(pid, "VmRSS") for name, pid in pids.items()}
    common = ["--bootstrap", bootstrap, "--partition", "0"]
    for topic in ("small", "large", "latency"):
        create_topic(bootstrap, topic)
    log(f"{system}: produce {args.small} x 100 B")
    result["produce_small"] = load(load_bin, log_path, "produce", *common, "--topic", "small",
                                   "--messages", str(args.small), "--size", "100")
    runs = []
    for i in range(CONSUME_RUNS):
        log(f"{system}: consume {args.small} x 100 B ({i + 1}/{CONSUME_RUNS})")
        runs.append(load(load_bin, log_path, "consume", *common, "--topic", "small",
                         "--messages", str(args.small)))
    # The median run stands for the round; stalls are counted over all runs.
    runs.sort(key=lambda r: r["msgs_per_sec"])
    result["consume_small"] = dict(runs[len(runs) // 2])
    result["consume_small"]["stalled_runs"] = sum(1 for r in runs if r["stalls"] > 0)
    result["consume_small"]["fastest"] = runs[-1]["msgs_per_sec"]
    log(f"{system}: produce {args.large} x 1 KiB")
    result["produce_large"] = load(load_bin, log_path, "produce", *common, "--topic", "large",
                                   "--messages", str(args.large), "--size", "1024")
    log(f"{system}: {LATENCY_RATE} x 1 KiB per second for {LATENCY_SECS} s")
    # linger.ms=0: the client sends each record at once, so the time is the server's
    # (with librdkafka's default of 5 ms, the client's own wait dominates every system).
    result["latency"] = load(load_bin, log_path, "latency", *common, "--topic", "latency",
                             "--rate", str(LATENCY_RATE), "--secs", str(LATENCY_SECS), "--size", "1024",
                             "-X", "linger.ms=0")
    result.update({f"peak_{name}_kib": status_kib(pid, "VmHWM") for name, pid in pids.items()})
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_side_by_side_args(p)
    p.add_argument("--small", type=int, default=1_000_000)
    p.add_argument("--large", type=int, default=500_000)
    p.add_argument("--systems", default="fjord,tansu,kafka")
    p.add_argument("--load", required=True)
    p.add_argument("--tansu", required=True)
    args = p.parse_args()
    root, work, bin_dir = Path(args.root), Path(args.work), Path(args.bin_dir)
    systems = [s for s in args.systems.split(",") if not (args.no_kafka and s == "kafka")]
    lib = ensure_jars(root, KAFKA_VERSION, log) if "kafka" in systems else None
    pids_file = work / "pids"
    results: dict[str, list[dict]] = {s: [] for s in systems}
    for r in range(args.rounds):
        order = systems[r % len(systems):] + systems[:r % len(systems)]
        for system in order:
            rdir = work / f"round-{r}-{system}"
            log(f"round {r + 1}/{args.rounds}: starting {system}")
            if system == "fjord":
                server = Cluster(PROG, bin_dir, rdir, pids_file, 1)
                stop = server.kill_all
            elif system == "tansu":
                server = Tansu(Path(args.tansu), rdir, pids_file)
                stop = server.stop
            else:
                server = KafkaReference(lib, rdir, pids_file, 1)
                stop = server.stop
            try:
                server.start()
                if system == "fjord":
                    pids = {"broker": server.brokers[1].pid, "coordinator": server.coordinator.pid}
                elif system == "tansu":
                    pids = {"broker": server.process.pid}
                else:
                    pids = {"broker": server.pids()[0]}
                results[system].append(run_system(args, system, server.bootstrap, pids, rdir))
            finally:
                stop()
                for data in rdir.glob("**/data"):
                    subprocess.run(["rm", "-rf", str(data)], check=False)
    print_table(args, root, work, results)
    return 0


def print_table(args, root: Path, work: Path, results: dict[str, list[dict]]) -> None:
    systems = list(results)

    def med(system: str, *path: str) -> float | None:
        values = []
        for r in results[system]:
            v = r
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            if isinstance(v, (int, float)):
                values.append(float(v))
        return median(values) if values else None

    print()
    print(f"Throughput benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}, fjord {commit_line(root)}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(f"client:    kafka-load (librdkafka 2.12.1, defaults, acks=all), one partition, RF1; "
          f"medians of {args.rounds} rounds")
    print("fjord:     one fjord-broker and a fjord-coordinator, default flags (fsync never, as Kafka)")
    if "tansu" in results:
        print(f"tansu:     tansu {TANSU_VERSION} from crates.io, --storage-engine memory://tansu/")
    if "kafka" in results:
        print(f"kafka:     Apache Kafka {KAFKA_VERSION}, KRaft, one combined broker+controller node, heap 1 GiB")
    print()
    rows_spec = [
        ("produce 100 B msg/s", ("produce_small", "msgs_per_sec"), 0, "higher", ">= 1.0"),
        ("produce 1 KiB msg/s", ("produce_large", "msgs_per_sec"), 0, "higher", ">= 1.0"),
        ("consume 100 B msg/s", ("consume_small", "msgs_per_sec"), 0, "higher", ">= 1.0"),
        ("consume 100 B, fastest run", ("consume_small", "fastest"), 0, "higher", ""),
        (f"p50 ms at {LATENCY_RATE}/s 1 KiB, linger 0", ("latency", "p50_ms"), 2, "lower", ""),
        (f"p99 ms at {LATENCY_RATE}/s 1 KiB, linger 0", ("latency", "p99_ms"), 2, "lower", "fjord < 2 ms"),
        ("idle RSS MiB (broker)", ("idle_broker_kib",), 1, "lower", "fjord < 30"),
        ("peak RSS MiB (broker)", ("peak_broker_kib",), 1, "lower", ""),
    ]
    header = ["measure", *systems]
    peers = [s for s in systems if s != "fjord"] if "fjord" in systems else []
    header += [f"fjord/{s}" for s in peers] + ["target"]
    rows = []
    for name, path, digits, _, target in rows_spec:
        values = {s: med(s, *path) for s in systems}
        if path[0].endswith("_kib"):
            values = {s: (v / 1024 if v is not None else None) for s, v in values.items()}
        row = [name, *(fmt(values[s], digits) for s in systems)]
        for s in peers:
            f, o = values["fjord"], values[s]
            row.append(fmt(f / o if f and o else None, 2))
        row.append(target)
        rows.append(row)
    if "fjord" in systems:
        coord = med("fjord", "idle_coordinator_kib")
        rows.append(["idle RSS MiB (coordinator)", fmt(coord / 1024 if coord else None, 1),
                     *("" for _ in systems[1:]), *("" for _ in peers), "fjord < 20"])
    print_rows(header, rows)
    print()
    print("What the consumer's statistics say about its Fetch requests (consume 100 B):")
    fheader = ["system", "fetches", "bytes/response", "rtt avg ms", "rtt p99 ms", "first record ms", "secs",
               "stalled runs", "longest stall ms"]
    frows = []
    for s in systems:
        frows.append([
            s,
            fmt(med(s, "consume_small", "requests", "requests")),
            fmt(med(s, "consume_small", "requests", "bytes_per_response")),
            fmt((med(s, "consume_small", "requests", "rtt_avg_us") or 0) / 1e3, 2),
            fmt((med(s, "consume_small", "requests", "rtt_p99_us") or 0) / 1e3, 2),
            fmt(med(s, "consume_small", "first_record_ms"), 1),
            fmt(med(s, "consume_small", "secs"), 2),
            f"{sum(r['consume_small']['stalled_runs'] for r in results[s])}/{CONSUME_RUNS * len(results[s])}",
            fmt(med(s, "consume_small", "longest_stall_ms")),
        ])
    print_rows(fheader, frows)
    print()
    print("targets: fjord/tansu and fjord/kafka >= 1.0 for every throughput; "
          "fjord p99 < 2 ms at 5k msg/s of 1 KiB; idle RSS < 30 MiB broker, < 20 MiB coordinator")


if __name__ == "__main__":
    broker_bench.run_main(main, log)
