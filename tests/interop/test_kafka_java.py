"""Kafka's Java client (kafka-clients from Maven Central, built by tests/java) against
three brokers. It negotiates the newest versions the brokers serve, which none of the
other clients here send: Produce 11, Fetch 17 (topic ids), JoinGroup 9, ListGroups 5,
OffsetCommit and OffsetFetch 9, FindCoordinator 4 and CreateTopics 7. The check
(tests/java/src/main/java/fjord/interop/ClientCheck.java) creates a replicated topic,
produces with an idempotent acks=all producer, consumes it in a group, commits, and
reads the group's offsets back through the admin client.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

JAVA_DIR = Path(__file__).resolve().parents[1] / "java"
# Small JVMs start fast on two cores.
JVM_FLAGS = ["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]


@pytest.fixture(scope="module")
def java_classpath() -> str:
    """Builds tests/java with Maven (once per run) and returns its run-time classpath."""
    mvn = shutil.which("mvn")
    assert mvn, "Maven (mvn) is missing: scripts/test installs it"
    classpath_file = JAVA_DIR / "target" / "classpath.txt"
    built = subprocess.run(
        [
            mvn, "-q", "-B", "-f", str(JAVA_DIR / "pom.xml"), "package",
            "dependency:build-classpath", f"-Dmdep.outputFile={classpath_file}",
        ],
        capture_output=True, text=True, timeout=900,
    )
    assert built.returncode == 0, f"mvn failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    jar = JAVA_DIR / "target" / "fjord-java-interop-1.jar"
    return f"{jar}:{classpath_file.read_text().strip()}"


def test_java_client_produces_consumes_and_commits_at_its_newest_versions(
    kafka_cluster, java_classpath
):
    cluster = kafka_cluster(brokers=3, group_initial_rebalance_delay_ms=0)
    result = subprocess.run(
        [
            "java", *JVM_FLAGS, "-cp", java_classpath, "fjord.interop.ClientCheck",
            cluster.bootstrap, "java-check", "java-group", "60",
        ],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.stdout.startswith("ok: 60 messages"), result.stdout
