"""Apache Kafka as the reference in broker benchmarks: a KRaft cluster of N combined
broker-and-controller nodes from Maven Central's `org.apache.kafka:kafka_2.13`, each a JVM
on loopback with its own config, data directory and log, so a benchmark can run the same
workload against Kafka and Fjord in one run.

The jars (the broker, `kafka_2.13`, and its command-line tools, `kafka-tools`) are fetched
once with Maven (`mvn dependency:copy-dependencies`) into
`target/kafka-reference/<version>/lib` and reused. Java 17 or later is needed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from broker_bench import STOP_TIMEOUT, BenchError, Cluster
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

DEFAULT_VERSION = "4.1.1"
STARTUP_TIMEOUT = 90.0
# Kafka's own default heap (kafka-server-start.sh), the same for every node.
HEAP = "-Xmx1g -Xms1g"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fjord.bench</groupId>
  <artifactId>kafka-reference</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def ensure_jars(root: Path, version: str, log) -> Path:
    """The directory of Kafka's runtime jars, fetched with Maven when missing."""
    base = root / "target" / "kafka-reference" / version
    lib = base / "lib"
    # "complete-tools": fetched with kafka-tools (an older fetch had the broker only).
    done = base / "complete-tools"
    if done.is_file():
        return lib
    if shutil.which("mvn") is None:
        raise BenchError("Maven (mvn) is needed to fetch Apache Kafka; or pass --no-kafka")
    log(f"fetching Apache Kafka {version} from Maven Central into {lib}")
    base.mkdir(parents=True, exist_ok=True)
    (base / "pom.xml").write_text(POM.format(version=version))
    result = subprocess.run(
        [
            "mvn", "-q", "-B", "-f", str(base / "pom.xml"), "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}", "-DincludeScope=runtime",
        ],
        capture_output=True, text=True, timeout=900,
    )
    if result.returncode != 0:
        raise BenchError(f"mvn could not fetch Kafka {version}: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    done.write_text("ok\n")
    return lib


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KafkaReference:
    """N Kafka nodes, each both broker and controller (KRaft), in WORKDIR/kafka-<n>."""

    def __init__(self, lib: Path, workdir: Path, pids_file: Path, nodes: int = 3,
                 settings: dict[str, str] | None = None, jvm_options: list[str] | None = None):
        self.lib = lib
        # More JVM options for every node (a -javaagent, say), with {node} replaced by its id.
        self.jvm_options = jvm_options or []
        self.workdir = workdir
        self.pids_file = pids_file
        self.nodes = nodes
        self.settings = settings or {}
        self.ports = {n: (free_port(), free_port()) for n in range(1, nodes + 1)}
        self.processes: dict[int, subprocess.Popen] = {}
        self.java = shutil.which("java") or "java"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p, _ in self.ports.values())

    def _java(self, *args: str, heap: str = "-Xmx256m") -> list[str]:
        return [self.java, *heap.split(), "-cp", f"{self.lib}/*", *args]

    def start(self) -> None:
        voters = ",".join(f"{n}@127.0.0.1:{c}" for n, (_, c) in self.ports.items())
        cluster_id = subprocess.run(
            self._java("kafka.tools.StorageTool", "random-uuid"),
            capture_output=True, text=True, timeout=120,
        ).stdout.strip().splitlines()[-1]
        for n, (port, cport) in self.ports.items():
            ndir = self.workdir / f"kafka-{n}"
            ndir.mkdir(parents=True)
            props = {
                "process.roles": "broker,controller",
                "node.id": str(n),
                "controller.quorum.voters": voters,
                "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names": "CONTROLLER",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name": "PLAINTEXT",
                "log.dirs": str(ndir / "data"),
                "offsets.topic.replication.factor": str(min(3, self.nodes)),
                **self.settings,
            }
            config = ndir / "server.properties"
            config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            formatted = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
                capture_output=True, text=True, timeout=120,
            )
            if formatted.returncode != 0:
                raise BenchError(f"kafka-storage format failed: {formatted.stdout}{formatted.stderr}")
            self._launch(n)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        # Kafka 4 no longer serves the Metadata v1 probe the Fjord cluster uses.
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while True:
            for n, proc in self.processes.items():
                if proc.poll() is not None:
                    raise BenchError(f"Kafka node {n} exited with {proc.returncode}; see {self.workdir}/kafka-{n}")
            try:
                if len(admin.list_topics(timeout=2).brokers) == self.nodes:
                    return
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"Kafka's {self.nodes} nodes did not all register within {STARTUP_TIMEOUT:.0f} s")
            time.sleep(0.5)

    def _launch(self, n: int) -> subprocess.Popen:
        ndir = self.workdir / f"kafka-{n}"
        with open(ndir / "server.log", "ab") as out:
            proc = subprocess.Popen(
                self._java(
                    *(o.replace("{node}", str(n)) for o in self.jvm_options),
                    f"-Dkafka.logs.dir={ndir}", "kafka.Kafka", str(ndir / "server.properties"), heap=HEAP,
                ),
                cwd=ndir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        self.processes[n] = proc
        with open(self.pids_file, "a") as f:
            f.write(f"{proc.pid} {os.path.realpath(self.java)}\n")
        return proc

    def restart_node(self, n: int) -> subprocess.Popen:
        """Starts node `n` again on its data (after it stopped or was killed); does not wait."""
        if self.processes[n].poll() is None:
            raise BenchError(f"Kafka node {n} is still running")
        return self._launch(n)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(STOP_TIMEOUT * 3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)


def add_side_by_side_args(parser, rounds: int = 3) -> None:
    """The options every Fjord-against-Kafka driver takes from its entry script."""
    parser.add_argument("--root", required=True)
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--load-before", default="?")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--no-kafka", action="store_true")


def side_by_side(prog: str, args, lib: Path | None, log, run) -> dict[str, list]:
    """Per round, alternating which goes first, starts a fresh 3-broker Fjord cluster and
    (unless --no-kafka) a 3-node Kafka in WORK/round-R-SYSTEM, calls
    `run(system, bootstrap, pids, rdir)` and stops it, then removes its data directories
    (the logs stay). Returns each system's results."""
    work, bin_dir = Path(args.work), Path(args.bin_dir)
    pids_file = work / "pids"
    systems = ["fjord"] if args.no_kafka else ["fjord", "kafka"]
    results: dict[str, list] = {s: [] for s in systems}
    for r in range(args.rounds):
        order = systems if r % 2 == 0 else list(reversed(systems))
        for system in order:
            rdir = work / f"round-{r}-{system}"
            if system == "fjord":
                cluster = Cluster(prog, bin_dir, rdir, pids_file, 3)
                stop = cluster.kill_all
            else:
                cluster = KafkaReference(lib, rdir, pids_file, 3)
                stop = cluster.stop
            try:
                log(f"round {r + 1}/{args.rounds}: starting {system}")
                cluster.start()
                if system == "fjord":
                    pids = [cluster.coordinator.pid, *(b.pid for b in cluster.brokers.values())]
                else:
                    pids = cluster.pids()
                results[system].append(run(system, cluster.bootstrap, pids, rdir))
            finally:
                stop()
                for data in rdir.glob("*/data"):
                    shutil.rmtree(data, ignore_errors=True)
    return results

