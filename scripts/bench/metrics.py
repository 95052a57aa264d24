"""Driver of `scripts/bench/metrics`: how long a Prometheus scrape takes.

A single broker leads every partition of one topic of `--partitions` partitions (2,000
by default), each with a record, and coordinates a consumer group with an offset
committed on every one of them, so a scrape computes per-partition log series and lag
for all of them. `/metrics` is scraped `--scrapes` times in a row; the table shows the
median, 90th percentile and largest time to the last byte, and the size of an answer.
The coordinator's `/metrics` and `/commands/monitor` are timed the same way.

The reference is Apache Kafka (KRaft, one node) with Prometheus' JMX exporter java agent
(`io.prometheus.jmx:jmx_prometheus_javaagent`, with the rules of its `kafka-2_0_0`
example), the way Kafka brokers are usually scraped, under the same workload. The JMX
exporter shows no consumer lag (that takes a separate kafka_exporter); Fjord's scrape
includes it. Target: a Fjord broker scrape under 50 ms.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import broker_bench  # noqa: E402
from broker_bench import BenchError, Cluster, commit_line, fmt, machine_lines, percentile  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka_reference import KafkaReference, ensure_jars, free_port  # noqa: E402

PROG = "metrics-bench"
TOPIC = "scraped"
GROUP = "scraped-group"
JMX_EXPORTER = "1.0.1"
# The generic rules of the JMX exporter's kafka-2_0_0.yml example, which give the names
# Fjord serves.
JMX_RULES = r"""lowercaseOutputName: true
rules:
  - pattern: kafka.(\w+)<type=(.+), name=(.+)PerSec\w*, (.+)=(.+), (.+)=(.+)><>Count
    name: kafka_$1_$2_$3_total
    type: COUNTER
    labels: {"$4": "$5", "$6": "$7"}
  - pattern: kafka.(\w+)<type=(.+), name=(.+)PerSec\w*, (.+)=(.+)><>Count
    name: kafka_$1_$2_$3_total
    type: COUNTER
    labels: {"$4": "$5"}
  - pattern: kafka.(\w+)<type=(.+), name=(.+)PerSec\w*><>Count
    name: kafka_$1_$2_$3_total
    type: COUNTER
  - pattern: kafka.(\w+)<type=(.+), name=(.+), (.+)=(.+), (.+)=(.+)><>Value
    name: kafka_$1_$2_$3
    type: GAUGE
    labels: {"$4": "$5", "$6": "$7"}
  - pattern: kafka.(\w+)<type=(.+), name=(.+), (.+)=(.+)><>Value
    name: kafka_$1_$2_$3
    type: GAUGE
    labels: {"$4": "$5"}
  - pattern: kafka.(\w+)<type=(.+), name=(.+)><>Value
    name: kafka_$1_$2_$3
    type: GAUGE
"""


def log(message: str) -> None:
    broker_bench.log(PROG, message)


def ensure_jmx_exporter(root: Path) -> Path:
    """The JMX exporter agent jar, fetched from Maven Central once."""
    base = root / "target" / "kafka-reference" / f"jmx-exporter-{JMX_EXPORTER}"
    jar = base / f"jmx_prometheus_javaagent-{JMX_EXPORTER}.jar"
    if jar.is_file():
        return jar
    log(f"fetching the JMX exporter {JMX_EXPORTER} from Maven Central")
    base.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mvn", "-q", "-B", "dependency:copy",
         f"-Dartifact=io.prometheus.jmx:jmx_prometheus_javaagent:{JMX_EXPORTER}",
         f"-DoutputDirectory={base}"],
        capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0 or not jar.is_file():
        raise BenchError(f"mvn could not fetch the JMX exporter: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    return jar


def http_address(stdout: Path) -> str:
    for line in stdout.read_text(errors="replace").splitlines():
        if line.startswith("http listening on "):
            return line.split()[-1]
    raise BenchError(f"no `http listening on` line in {stdout}")


def time_gets(url: str, count: int) -> tuple[list[float], int]:
    """`count` GETs in a row: seconds to the last byte of each, and the last body's size."""
    times, size = [], 0
    for _ in range(count):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read()
        times.append(time.perf_counter() - start)
        size = len(body)
    return times, size


def load(bootstrap: str, partitions: int) -> None:
    """The topic, a record in every partition, and the group's offsets on all of them."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    for future in admin.create_topics([NewTopic(TOPIC, partitions, 1)], operation_timeout=120).values():
        future.result(timeout=180)
    deadline = time.monotonic() + 180
    while True:
        md = admin.list_topics(TOPIC, timeout=10).topics.get(TOPIC)
        if md and len(md.partitions) == partitions and all(p.leader >= 0 for p in md.partitions.values()):
            break
        if time.monotonic() > deadline:
            raise BenchError(f"{TOPIC}: not every partition has a leader after 180 s")
        time.sleep(0.5)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0})
    failed = []
    for p in range(partitions):
        producer.produce(TOPIC, b"x" * 100, partition=p,
                         on_delivery=lambda err, _m: err and failed.append(err))
        producer.poll(0)
    if producer.flush(120) or failed:
        raise BenchError(f"producing one record per partition failed: {failed[:3]}")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "log_level": 0})
    try:
        consumer.commit(offsets=[TopicPartition(TOPIC, p, 0) for p in range(partitions)], asynchronous=False)
    finally:
        consumer.close()


def summarize(times: list[float]) -> tuple[float, float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1000, percentile(ordered, 90) * 1000, ordered[-1] * 1000


def run_fjord(args, rdir: Path) -> dict:
    cluster = Cluster(PROG, Path(args.bin_dir), rdir, Path(args.work) / "pids", 1,
                      broker_args=["--http-listen", "127.0.0.1:0"])
    cluster.coordinator.command_base += ["--http-listen", "127.0.0.1:0"]
    try:
        cluster.start()
        log(f"fjord: creating {args.partitions} partitions and loading them")
        load(cluster.bootstrap, args.partitions)
        broker = cluster.brokers[1]
        broker_http = http_address(broker.workdir / f"stdout-{broker.starts - 1}.txt")
        coord_http = http_address(cluster.coordinator.workdir / f"stdout-{cluster.coordinator.starts - 1}.txt")
        time_gets(f"http://{broker_http}/metrics", 3)
        out = {}
        out["broker"] = time_gets(f"http://{broker_http}/metrics", args.scrapes)
        with urllib.request.urlopen(f"http://{broker_http}/metrics", timeout=30) as r:
            text = r.read().decode()
        lag_rows = sum(1 for line in text.splitlines() if line.startswith("kafka_consumergroup_lag{"))
        if lag_rows != args.partitions:
            raise BenchError(f"the scrape shows lag for {lag_rows} partitions, not {args.partitions}")
        out["coordinator"] = time_gets(f"http://{coord_http}/metrics", args.scrapes)
        out["monitor"] = time_gets(f"http://{coord_http}/commands/monitor", args.scrapes)
        return out
    finally:
        cluster.kill_all()


def run_kafka(args, rdir: Path, lib: Path, jar: Path) -> dict:
    rules = rdir / "jmx-exporter.yml"
    rdir.mkdir(parents=True)
    rules.write_text(JMX_RULES)
    port = free_port()
    kafka = KafkaReference(lib, rdir, Path(args.work) / "pids", nodes=1,
                           jvm_options=[f"-javaagent:{jar}={port}:{rules}"])
    try:
        kafka.start()
        log(f"kafka: creating {args.partitions} partitions and loading them")
        load(kafka.bootstrap, args.partitions)
        url = f"http://127.0.0.1:{port}/metrics"
        time_gets(url, 3)
        return {"broker": time_gets(url, args.scrapes)}
    finally:
        kafka.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog=PROG)
    parser.add_argument("--root", required=True)
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--load-before", default="?")
    parser.add_argument("--partitions", type=int, default=2000)
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--no-kafka", action="store_true")
    parser.add_argument("--kafka-version", default="4.4.0")
    args = parser.parse_args()
    root, work = Path(args.root), Path(args.work)
    results = {"fjord": run_fjord(args, work / "fjord")}
    if not args.no_kafka:
        lib = ensure_jars(root, args.kafka_version, log)
        jar = ensure_jmx_exporter(root)
        results["kafka"] = run_kafka(args, work / "kafka", lib, jar)

    print()
    print(f"# Prometheus scrape time, {args.partitions} partitions led by one broker, "
          f"{args.scrapes} scrapes in a row")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(commit_line(root))
    print()
    print(f"| {'endpoint':<44} | {'median ms':>9} | {'p90 ms':>7} | {'max ms':>7} | {'bytes':>9} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 11}|")
    rows = [
        ("Fjord broker /metrics (with group lag)", results["fjord"]["broker"]),
        ("Fjord coordinator /metrics", results["fjord"]["coordinator"]),
        ("Fjord coordinator /commands/monitor", results["fjord"]["monitor"]),
    ]
    if "kafka" in results:
        rows.append((f"Kafka {args.kafka_version} + JMX exporter {JMX_EXPORTER}", results["kafka"]["broker"]))
    for name, (times, size) in rows:
        med, p90, worst = summarize(times)
        print(f"| {name:<44} | {fmt(med, 1):>9} | {fmt(p90, 1):>7} | {fmt(worst, 1):>7} | {size:>9} |")
    med = summarize(results["fjord"]["broker"][0])[0]
    print()
    print(f"target: a broker scrape under 50 ms: {'met' if med < 50 else 'NOT met'} ({med:.1f} ms median)")
    if "kafka" in results:
        ratio = summarize(results["kafka"]["broker"][0])[0] / med
        print(f"Fjord's broker scrape is {ratio:.1f}x as fast as Kafka's through the JMX exporter")
    print(f"python {platform.python_version()}")
    return 0


if __name__ == "__main__":
    broker_bench.run_main(main, log)
