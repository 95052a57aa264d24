"""Driver of `scripts/bench/restart`: how long one broker takes to come back with many
partitions and much data, after a clean shutdown and after `kill -9`, Fjord against a
single Apache Kafka 4.4 node in the same run.

Per system, on a fresh server: one topic of `--partitions` partitions (RF1) is filled
with `--gib` GiB of 1 KiB records by `kafka-load` (librdkafka's sticky partitioner spreads
them over every partition). Then:

1. clean: SIGTERM, time until the process exits; start it again on the same data, time
   until it accepts connections (Metadata answers) and until every partition answers
   ListOffsets (latest) with no error, which needs its log open;
2. kill -9: 100,000 more records, `kill -9` as soon as the last is acknowledged, start
   again and time the same two moments.

After each restart the latest offsets must add up to every record acknowledged so far:
a restart may take time, never data. The table shows both servers' times and RSS once
every partition answers. Every wait has a deadline.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import broker_bench  # noqa: E402
from broker_bench import BenchError, Cluster, commit_line, fmt, machine_lines, print_rows, status_kib  # noqa: E402
from confluent_kafka import KafkaException, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic, OffsetSpec  # noqa: E402
from kafka_reference import KafkaReference, add_side_by_side_args, ensure_jars  # noqa: E402

PROG = "restart"
KAFKA_VERSION = "4.4.0"
TOPIC = "restart"
READY_TIMEOUT = 900.0
STOP_TIMEOUT = 300.0
FILL_TIMEOUT = 3600.0
TOP_UP = 100_000
# Partitions per CreateTopics/CreatePartitions request to Kafka.
KAFKA_STEP = 5_000


def log(message: str) -> None:
    broker_bench.log(PROG, message)


def produce(load: Path, bootstrap: str, messages: int, log_path: Path) -> int:
    """Sends `messages` 1 KiB records over every partition; returns how many were
    acknowledged (all of them, or kafka-load fails)."""
    args = ["produce", "--bootstrap", bootstrap, "--topic", TOPIC, "--partition", "-1",
            "--messages", str(messages), "--size", "1024", "--timeout", str(FILL_TIMEOUT)]
    result = broker_bench.kafka_load(load, log_path, args, FILL_TIMEOUT + 60)
    log(f"produced {messages} records at {result['msgs_per_sec']:.0f}/s")
    return messages


def latest_offsets(admin: AdminClient, partitions: int) -> dict[int, int] | None:
    """Every partition's latest offset, or None if any partition did not answer."""
    request = {TopicPartition(TOPIC, p): OffsetSpec.latest() for p in range(partitions)}
    try:
        futures = admin.list_offsets(request, request_timeout=30)
    except KafkaException:
        return None
    out = {}
    for tp, f in futures.items():
        try:
            out[tp.partition] = f.result(timeout=60).offset
        except KafkaException:
            return None
        except Exception:  # noqa: BLE001 - a timeout or a broken connection: not ready
            return None
    return out


def wait_ready(bootstrap: str, partitions: int, began: float, exited) -> tuple[float, float, int]:
    """Seconds from `began` until Metadata answers and until every partition answers
    ListOffsets; and the sum of the latest offsets then."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "socket.timeout.ms": 60000})
    deadline = began + READY_TIMEOUT
    up = None
    while True:
        code = exited()
        if code is not None:
            raise BenchError(f"the server exited with {code} while starting")
        try:
            # One topic's metadata (all topics' with 10,000 partitions take seconds),
            # asked every time: it also refreshes the client's view of the partitions.
            if admin.list_topics(TOPIC, timeout=10).brokers and up is None:
                up = time.monotonic() - began
        except KafkaException:
            pass
        if up is not None:
            offsets = latest_offsets(admin, partitions)
            if offsets is not None and all(o >= 0 for o in offsets.values()):
                return up, time.monotonic() - began, sum(offsets.values())
        if time.monotonic() > deadline:
            raise BenchError(f"not every partition answered within {READY_TIMEOUT:.0f} s")
        time.sleep(0.2)


class FjordServer:
    def __init__(self, args, rdir: Path):
        self.cluster = Cluster(PROG, Path(args.bin_dir), rdir, Path(args.work) / "pids", 1)

    def start(self) -> None:
        self.cluster.start()

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    @property
    def broker(self):
        return self.cluster.brokers[1]

    def pid(self) -> int:
        return self.broker.pid

    def create_topic(self, partitions: int) -> None:
        try:
            self.cluster.fjord("topics", "create", TOPIC, "--partitions", str(partitions),
                               "--replication-factor", "1", timeout=600)
        except BenchError as e:
            # CreateTopics waits at most 30 s for every partition to be served; with
            # thousands it can take longer. The caller waits for them.
            if "the topic was created" not in str(e):
                raise
            log(f"fjord: {e}; waiting for every partition")

    def stop(self) -> float:
        began = time.monotonic()
        self.broker.process.terminate()
        self.broker.process.wait(STOP_TIMEOUT)
        return time.monotonic() - began

    def kill(self) -> None:
        self.broker.kill()

    def restart(self) -> tuple[float, callable]:
        began = time.monotonic()
        # A restart after kill -9 may wait for the old session to expire: count it.
        self.broker.start(timeout=READY_TIMEOUT)
        return began, lambda: self.broker.process.poll()

    def shutdown(self) -> None:
        self.cluster.kill_all()


class KafkaServer:
    def __init__(self, args, rdir: Path, lib: Path):
        self.ref = KafkaReference(lib, rdir, Path(args.work) / "pids", 1)

    def start(self) -> None:
        self.ref.start()

    @property
    def bootstrap(self) -> str:
        return self.ref.bootstrap

    def pid(self) -> int:
        return self.ref.pids()[0]

    def create_topic(self, partitions: int) -> None:
        # KRaft refuses one operation of more than 10,000 records ("excessively large
        # batch operation"): create the topic in steps.
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        first = min(partitions, KAFKA_STEP)
        futures = admin.create_topics([NewTopic(TOPIC, num_partitions=first, replication_factor=1)],
                                      operation_timeout=600, request_timeout=600)
        futures[TOPIC].result(timeout=660)
        for total in range(first + KAFKA_STEP, partitions + KAFKA_STEP, KAFKA_STEP):
            futures = admin.create_partitions([NewPartitions(TOPIC, min(total, partitions))],
                                              operation_timeout=600, request_timeout=600)
            futures[TOPIC].result(timeout=660)

    def stop(self) -> float:
        began = time.monotonic()
        proc = self.ref.processes[1]
        proc.terminate()
        proc.wait(STOP_TIMEOUT)
        return time.monotonic() - began

    def kill(self) -> None:
        proc = self.ref.processes[1]
        proc.kill()
        proc.wait(30)

    def restart(self) -> tuple[float, callable]:
        began = time.monotonic()
        proc = self.ref.restart_node(1)
        return began, lambda: proc.poll()

    def shutdown(self) -> None:
        self.ref.stop()


def restart_and_check(server, system: str, how: str, partitions: int, acked: int, result: dict) -> None:
    """Starts the stopped server, times it into result[how + "_up_s" / "_ready_s"] and
    checks that every acknowledged record is there."""
    began, exited = server.restart()
    up, ready, total = wait_ready(server.bootstrap, partitions, began, exited)
    result.update({f"{how}_up_s": up, f"{how}_ready_s": ready, f"{how}_rss": status_kib(server.pid(), "VmRSS") / 1024})
    if total != acked:
        raise BenchError(f"{system}: after the {how} restart the partitions hold {total} records, "
                         f"{acked} were acknowledged")
    log(f"{system}: {how} restart: up after {up:.2f} s, every partition after {ready:.2f} s")


def run_system(args, system: str, server, rdir: Path) -> dict:
    load, clients_log = Path(args.load), rdir / "clients.log"
    partitions = args.partitions
    records = int(args.gib * (1 << 30)) // 1024
    log(f"{system}: starting")
    server.start()
    result: dict = {}
    try:
        log(f"{system}: creating {partitions} partitions")
        began = time.monotonic()
        server.create_topic(partitions)
        _, ready, _ = wait_ready(server.bootstrap, partitions, began, lambda: None)
        result["create_s"] = ready
        log(f"{system}: every partition answers {ready:.1f} s after the create request")
        log(f"{system}: writing {args.gib} GiB ({records} records of 1 KiB)")
        acked = produce(load, server.bootstrap, records, clients_log)

        log(f"{system}: clean shutdown")
        result["stop_s"] = server.stop()
        restart_and_check(server, system, "clean", partitions, acked, result)

        acked += produce(load, server.bootstrap, TOP_UP, clients_log)
        log(f"{system}: kill -9")
        server.kill()
        restart_and_check(server, system, "kill", partitions, acked, result)
        result["records"] = acked
    finally:
        server.shutdown()
        for data in rdir.glob("**/data"):
            subprocess.run(["rm", "-rf", str(data)], check=False)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_side_by_side_args(p, rounds=1)
    p.add_argument("--partitions", type=int, default=10_000)
    p.add_argument("--gib", type=float, default=10.0)
    p.add_argument("--load", required=True)
    p.add_argument("--systems", default="fjord,kafka")
    args = p.parse_args()
    root, work = Path(args.root), Path(args.work)
    systems = [s for s in args.systems.split(",") if not (args.no_kafka and s == "kafka")]
    lib = ensure_jars(root, KAFKA_VERSION, log) if "kafka" in systems else None
    results: dict[str, list[dict]] = {s: [] for s in systems}
    for r in range(args.rounds):
        order = systems if r % 2 == 0 else list(reversed(systems))
        for system in order:
            rdir = work / f"round-{r}-{system}"
            server = FjordServer(args, rdir) if system == "fjord" else KafkaServer(args, rdir, lib)
            results[system].append(run_system(args, system, server, rdir))
    print_table(args, root, work, results)
    return 0


def print_table(args, root: Path, work: Path, results: dict[str, list[dict]]) -> None:
    print()
    print(f"Restart benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}, fjord {commit_line(root)}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(f"workload:  one broker, one topic of {args.partitions} partitions (RF1), {args.gib} GiB of 1 KiB "
          f"records; {args.rounds} round(s), medians")
    if "kafka" in results:
        print(f"kafka:     Apache Kafka {KAFKA_VERSION}, KRaft, one combined broker+controller node, heap 1 GiB")
    print()
    rows = [
        ("create the partitions (s)", "create_s", 1),
        ("clean shutdown (s)", "stop_s", 2),
        ("clean restart: accepting connections (s)", "clean_up_s", 2),
        ("clean restart: every partition answers (s)", "clean_ready_s", 2),
        ("kill -9 restart: accepting connections (s)", "kill_up_s", 2),
        ("kill -9 restart: every partition answers (s)", "kill_ready_s", 2),
        ("RSS after the clean restart (MiB)", "clean_rss", 1),
        ("RSS after the kill -9 restart (MiB)", "kill_rss", 1),
    ]
    systems = list(results)
    both = "fjord" in results and "kafka" in results
    header = ["measure", *systems] + (["fjord/kafka"] if both else [])
    table = []
    for name, key, digits in rows:
        values = {s: broker_bench.median([r[key] for r in results[s]]) for s in systems}
        row = [name, *(fmt(values[s], digits) for s in systems)]
        if both:
            f, k = values["fjord"], values["kafka"]
            row.append(fmt(f / k if f and k else None, 2))
        table.append(row)
    print_rows(header, table)
    print()
    print("every restart kept every acknowledged record (the latest offsets add up to them)")


if __name__ == "__main__":
    broker_bench.run_main(main, log)
