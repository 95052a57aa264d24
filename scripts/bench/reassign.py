"""Driver of `scripts/bench/reassign`: moving partitions between brokers on Fjord and, in the
same run, on Apache Kafka (KRaft, three combined broker-and-controller nodes), both with
Kafka's own tool (`kafka-reassign-partitions`, from kafka-tools) and the same clients.

Per round and system, on a fresh 3-node cluster (`side_by_side`: the order of the systems
alternates between rounds):

1. creates `moves` (6 partitions, replication factor 1, placed by the brokers: two per
   broker on both systems) and fills it with `--messages` records of `--size` bytes
   (kafka-load, acks=all), and `probe` (3 partitions, replication factor 1);
2. starts a latency probe: a confluent-kafka producer sending 1 KiB records round robin to
   `probe` at `--probe-rate` per second (acks=all, linger.ms=0), each delivery timed;
3. idle: the probe alone for 5 s (its baseline latency);
4. unthrottled: every partition of `moves` moves to the next broker
   (`--execute`), then `--verify` every 0.5 s until done; the time is from the start of
   `--execute` to the first `--verify` that reports every partition complete;
5. throttled: every partition moves back with `--throttle` (bytes per second per broker),
   timed the same way.

The table has, per system, the time and the copy rate (values moved per second) of each
move and the probe's p50 and p99 latency during it, then the Fjord/Kafka ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))

import broker_bench  # noqa: E402
from broker_bench import (BenchError, commit_line, fmt, machine_lines, median,  # noqa: E402
                          native_phase, percentile, print_rows)
from kafka_reference import add_side_by_side_args, ensure_jars, side_by_side  # noqa: E402
from perftools import KAFKA_VERSION, tool  # noqa: E402

PROG = "reassign-bench"
REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
MOVES, PROBE = "moves", "probe"
MOVE_PARTITIONS = 6
IDLE_SECS = 5.0


def log(message: str) -> None:
    broker_bench.log(PROG, message)


class Probe(threading.Thread):
    """A producer sending 1 KiB records at a steady rate, recording (sent at, latency)."""

    def __init__(self, bootstrap: str, rate: int) -> None:
        super().__init__(daemon=True)
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
            "enable.idempotence": False, "log_level": 0,
        })
        self.rate = rate
        self.samples: list[tuple[float, float]] = []
        self.failed = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def _report(self, sent_at: float, err, _msg) -> None:
        if err is not None:
            self.failed += 1
            return
        now = time.perf_counter()
        with self._lock:
            self.samples.append((sent_at, now - sent_at))

    def run(self) -> None:
        payload = b"p" * 1024
        interval = 1.0 / self.rate
        n = 0
        next_at = time.perf_counter()
        while not self._halt.is_set():
            now = time.perf_counter()
            if now < next_at:
                self.producer.poll(min(next_at - now, 0.01))
                continue
            sent_at = time.perf_counter()
            self.producer.produce(PROBE, payload, partition=n % 3,
                                  on_delivery=lambda e, m, t=sent_at: self._report(t, e, m))
            n += 1
            next_at += interval
            self.producer.poll(0)
        self.producer.flush(30)

    def stop(self) -> None:
        self._halt.set()
        self.join(60)

    def window(self, start: float, end: float) -> tuple[float | None, float | None]:
        """p50 and p99 latency (ms) of the records sent within [start, end]."""
        with self._lock:
            lat = sorted(1000 * l for t, l in self.samples if start <= t <= end)
        return percentile(lat, 50), percentile(lat, 99)


def create(admin: AdminClient, topic: str, partitions: int) -> list[int]:
    """Creates `topic` with replication factor 1, the brokers placing the partitions, and
    returns each partition's broker."""
    for f in admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=60).values():
        f.result(timeout=90)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        if md and not md.error and len(md.partitions) == partitions and all(
            p.leader >= 0 for p in md.partitions.values()
        ):
            return [md.partitions[p].replicas[0] for p in range(partitions)]
        time.sleep(0.2)
    raise BenchError(f"topic {topic} not ready within 60 s")


def move(lib: Path, bootstrap: str, plan: dict, throttle: int | None, rdir: Path, what: str,
         probe: Probe, timeout: float) -> dict:
    """Runs the plan with kafka-reassign-partitions and times it to the first --verify that
    reports every partition complete."""
    path = rdir / f"plan-{what}.json"
    path.write_text(json.dumps(plan))
    tool_log = rdir / "tool.log"
    args = ["--bootstrap-server", bootstrap, "--reassignment-json-file", str(path)]
    start = time.perf_counter()
    tool(lib, REASSIGN, [*args, "--execute", *(["--throttle", str(throttle)] if throttle else [])],
         tool_log)
    deadline = time.monotonic() + timeout
    while True:
        out = tool(lib, REASSIGN, [*args, "--verify"], tool_log)
        done = out.count("is completed")
        if done == len(plan["partitions"]) and "still in progress" not in out:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"{what} move not done within {timeout:.0f} s: {out[-500:]}")
        time.sleep(0.5)
    end = time.perf_counter()
    p50, p99 = probe.window(start, end)
    return {"secs": end - start, "p50": p50, "p99": p99}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_side_by_side_args(p, rounds=1)
    p.add_argument("--load", required=True, help="the kafka-load binary")
    p.add_argument("--messages", type=int, default=300_000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--throttle", type=int, default=10_000_000)
    p.add_argument("--probe-rate", type=int, default=500)
    p.add_argument("--max-secs", type=float, default=900.0)
    args = p.parse_args()
    if args.messages < 1000 or args.throttle < 1 or args.probe_rate < 1:
        raise BenchError("--messages must be at least 1000, --throttle and --probe-rate positive")
    root, work = Path(args.root), Path(args.work)
    # Kafka's tool drives both systems, so its jars are needed even without Kafka itself.
    lib = ensure_jars(root, KAFKA_VERSION, log)
    data_mb = args.messages * args.size / 1e6

    def run(system: str, bootstrap: str, pids: list[int], rdir: Path) -> dict:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        brokers = sorted(admin.list_topics(timeout=10).brokers)
        if len(brokers) != 3:
            raise BenchError(f"{system}: expected 3 brokers, found {brokers}")
        home = create(admin, MOVES, MOVE_PARTITIONS)
        create(admin, PROBE, 3)
        native_phase(Path(args.load), rdir / "client.log", bootstrap, MOVES, args.messages,
                     args.size, {"acks": "all"}, pids, args.max_secs)
        os.sync()
        probe = Probe(bootstrap, args.probe_rate)
        probe.start()
        try:
            time.sleep(1.0)
            t0 = time.perf_counter()
            time.sleep(IDLE_SECS)
            idle = probe.window(t0, time.perf_counter())
            away = {"version": 1, "partitions": [
                {"topic": MOVES, "partition": i, "replicas": [brokers[(brokers.index(b) + 1) % 3]]}
                for i, b in enumerate(home)]}
            back = {"version": 1, "partitions": [
                {"topic": MOVES, "partition": i, "replicas": [b]} for i, b in enumerate(home)]}
            fast = move(lib, bootstrap, away, None, rdir, "unthrottled", probe, args.max_secs)
            log(f"{system}: unthrottled move of {data_mb:.0f} MB in {fast['secs']:.1f} s, "
                f"probe p99 {fmt(fast['p99'], 1)} ms")
            os.sync()
            slow = move(lib, bootstrap, back, args.throttle, rdir, "throttled", probe, args.max_secs)
            log(f"{system}: throttled move in {slow['secs']:.1f} s, probe p99 {fmt(slow['p99'], 1)} ms")
        finally:
            probe.stop()
        if probe.failed:
            raise BenchError(f"{system}: {probe.failed} probe records failed")
        return {"idle": idle, "fast": fast, "slow": slow}

    results = side_by_side(PROG, args, lib, log, run)
    print_table(args, root, work, results, data_mb)
    return 0


def print_table(args, root: Path, work: Path, results: dict[str, list[dict]], data_mb: float) -> None:
    def med(system: str, fn):
        return median([v for v in (fn(r) for r in results[system]) if v is not None])

    print()
    print(f"Reassignment benchmark against Apache Kafka, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"fjord {commit_line(root)}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(f"workload:  6 partitions (RF1, two per broker) holding {args.messages} records of "
          f"{args.size} B ({data_mb:.0f} MB of values), each moved to the next broker and back "
          f"with kafka-reassign-partitions ({KAFKA_VERSION}); the way back throttled to "
          f"{args.throttle} B/s per broker; a probe producing {args.probe_rate} records/s of "
          f"1 KiB (acks=all, linger.ms=0) meanwhile; medians of {args.rounds} rounds")
    print("fjord:     3 fjord-brokers and a fjord-coordinator, default flags")
    if "kafka" in results:
        print(f"kafka:     Apache Kafka {KAFKA_VERSION}, KRaft, 3 combined broker+controller nodes, heap 1 GiB each")
    print()
    header = ["system", "idle probe p50/p99 ms", "move s", "MB/s", "probe p50/p99 ms",
              "throttled move s", "MB/s", "probe p50/p99 ms"]
    rows = []
    for system in results:
        def lat(key):
            return (f"{fmt(med(system, lambda r: r[key][0] if key == 'idle' else r[key]['p50']), 1)} / "
                    f"{fmt(med(system, lambda r: r[key][1] if key == 'idle' else r[key]['p99']), 1)}")
        rows.append([
            system, lat("idle"),
            fmt(med(system, lambda r: r["fast"]["secs"]), 1),
            fmt(med(system, lambda r: data_mb / r["fast"]["secs"]), 1), lat("fast"),
            fmt(med(system, lambda r: r["slow"]["secs"]), 1),
            fmt(med(system, lambda r: data_mb / r["slow"]["secs"]), 1), lat("slow"),
        ])
    if "kafka" in results:
        def over(fn):
            f, k = med("fjord", fn), med("kafka", fn)
            return fmt(f / k if f and k else None, 2)
        rows.append(["fjord/kafka", "",
                     over(lambda r: r["fast"]["secs"]), over(lambda r: data_mb / r["fast"]["secs"]),
                     f"p99 {over(lambda r: r['fast']['p99'])}",
                     over(lambda r: r["slow"]["secs"]), over(lambda r: data_mb / r["slow"]["secs"]),
                     f"p99 {over(lambda r: r['slow']['p99'])}"])
    print_rows(header, rows)
    print()
    print(f"throttled copy: at most {3 * args.throttle / 1e6:.0f} MB/s in all (3 leaders, each "
          f"limited to {args.throttle / 1e6:.0f} MB/s)")


if __name__ == "__main__":
    broker_bench.run_main(main, log)
