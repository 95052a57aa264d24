"""Driver of `scripts/bench/security`: produce and consume throughput over SASL_SSL
(SCRAM-SHA-512, TLS 1.3) against PLAINTEXT, on the same 3-broker Fjord cluster, with the
same client (confluent-kafka / librdkafka).

Each broker has two listeners, PLAIN (PLAINTEXT) and SECURE (SASL_SSL); replication runs
over PLAIN, so the comparison is the client path alone. Per round, on a fresh cluster, for
each listener in turn (alternating which goes first), one topic of 3 partitions (RF1):

1. produce: 1 KiB values, acks=all, as fast as the client goes with at most
   `--outstanding` unacknowledged, for `--secs` seconds after a warm-up;
2. consume: one assign()-only consumer reads everything back from the beginning with
   librdkafka's defaults; msgs/s from the first message to the last.

The table shows medians over the rounds, the SASL_SSL/PLAINTEXT ratio and the target
(at least 0.7 for both).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import broker_bench  # noqa: E402
from broker_bench import (  # noqa: E402
    STARTUP_TIMEOUT,
    BenchError,
    Cluster,
    client_logger,
    commit_line,
    cpu_seconds,
    fmt,
    machine_lines,
    median,
    produce_phase,
)
import confluent_kafka  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

PROG = "security-bench"
USER = "bench"
LISTENERS = {"PLAIN": "PLAINTEXT", "SECURE": "SASL_SSL"}


def log(message: str) -> None:
    broker_bench.log(PROG, message)


def openssl(*args: str, cwd: Path) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise BenchError("the openssl command is needed (apt-get install openssl)") from None
    except subprocess.CalledProcessError as e:
        raise BenchError(f"openssl {args[0]} failed: {e.stderr.decode(errors='replace')}") from None


def make_pki(work: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1."""
    pki = work / "pki"
    pki.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=bench CA", cwd=pki)
    (pki / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=pki)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-sha256", "-extfile", "server.ext", cwd=pki)
    return {"ca": pki / "ca.pem", "cert": pki / "server.pem", "key": pki / "server.key"}


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int, config: dict,
                timeout: float, logger) -> tuple[int, float]:
    """Reads `expected` messages from the beginning of every partition; (count, seconds
    from the first message to the last)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "security-bench",
        "enable.auto.commit": False,
        "logger": logger,
        **config,
    })
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        count, first = 0, None
        deadline = time.monotonic() + timeout
        while count < expected:
            if time.monotonic() > deadline:
                raise BenchError(f"read {count} of {expected} messages of {topic} within {timeout:.0f} s")
            for msg in consumer.consume(10000, 0.5):
                if msg.error() is not None:
                    raise BenchError(f"consumer error on {topic}: {msg.error()}")
                if first is None:
                    first = time.perf_counter()
                count += 1
        return count, time.perf_counter() - (first or time.perf_counter())
    finally:
        consumer.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", required=True)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--load-before", default="?")
    p.add_argument("--secs", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--outstanding", type=int, default=10000)
    p.add_argument("--flush-timeout", type=float, default=60)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, broker_bench._on_sigterm)
    try:
        return run(args)
    except BenchError as e:
        log(f"error: {e}")
        return 1
    except (KeyboardInterrupt, broker_bench.Terminated):
        log("interrupted")
        return 130


def run(args) -> int:
    root, bin_dir, work = Path(args.root), Path(args.bin_dir), Path(args.work)
    pids = work / "pids"
    pki = make_pki(work)
    password = os.urandom(12).hex()
    password_file = work / "bench.password"
    password_file.write_text(password + "\n")
    payload = os.urandom(args.size)
    clients = {
        "PLAIN": {},
        "SECURE": {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": USER,
            "sasl.password": password,
            "ssl.ca.location": str(pki["ca"]),
        },
    }
    produced: dict[str, list] = {n: [] for n in LISTENERS}
    consumed: dict[str, list] = {n: [] for n in LISTENERS}
    broker_args = [
        "--inter-broker-listener", "PLAIN",
        "--ssl-certificate", str(pki["cert"]), "--ssl-key", str(pki["key"]),
    ]
    for round_no in range(1, args.rounds + 1):
        cluster = Cluster(PROG, bin_dir, work / f"round-{round_no}", pids, 3,
                          broker_args=broker_args, listeners=LISTENERS)
        try:
            cluster.start()
            done = subprocess.run(
                [str(bin_dir / "fjord"), "--coordinator", cluster.coordinator.address, "users",
                 "set-scram", USER, "--via-coordinator", "--password-file", str(password_file)],
                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                raise BenchError(f"cannot create the bench user: {done.stderr.strip()}")
            order = list(LISTENERS) if round_no % 2 == 1 else list(reversed(LISTENERS))
            for name in order:
                topic = f"bench-{name.lower()}"
                cluster.fjord("topics", "create", topic, "--partitions", str(args.partitions),
                              "--replication-factor", "1")
                cluster.wait_for_partitions(topic, args.partitions, 1, STARTUP_TIMEOUT)
                bootstrap = ",".join(b.listener_addresses[name] for b in cluster.brokers.values())
                logger = client_logger(work / "client.log", f"{name}-{round_no}")
                producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "logger": logger,
                                     **clients[name]})
                warm = 0
                try:
                    if args.warmup > 0:
                        warm = produce_phase(producer, topic, payload, args.warmup, 0, args.outstanding,
                                             args.warmup, args.flush_timeout).delivered
                    before = sum(cpu_seconds(b.pid) for b in cluster.brokers.values())
                    result = produce_phase(producer, topic, payload, args.secs, 0, args.outstanding,
                                           600, args.flush_timeout)
                    result.brokers_cpu = sum(cpu_seconds(b.pid) for b in cluster.brokers.values()) - before
                finally:
                    producer.purge()
                    producer.flush(5)
                # Everything in the topic, the warm-up's messages too, is read back.
                total = warm + result.delivered
                produced[name].append(result)
                before = sum(cpu_seconds(b.pid) for b in cluster.brokers.values())
                count, secs = consume_all(bootstrap, topic, args.partitions, total, clients[name],
                                          120, logger)
                consumed[name].append((count, secs,
                                       sum(cpu_seconds(b.pid) for b in cluster.brokers.values()) - before))
                log(f"round {round_no}/{args.rounds}: {name}: produced {fmt(result.msgs_per_sec)} msgs/s, "
                    f"consumed {count} in {secs:.2f} s ({fmt(count / secs if secs else None)} msgs/s)")
                cluster.check_alive(f"during the {name} phases")
            for problem in cluster.stop():
                log(f"warning: {problem}")
        finally:
            cluster.kill_all()
            cluster.remove_data()

    def med_produce(name, fn):
        return median([v for v in (fn(r) for r in produced[name]) if v is not None])

    def med_consume(name, fn):
        return median([v for v in (fn(c) for c in consumed[name]) if v is not None])

    mb = args.size / 1e6
    rows = [
        ("produce msgs/s (acks=all)", lambda n: med_produce(n, lambda r: r.msgs_per_sec), 0, 0.7),
        ("produce MB/s", lambda n: med_produce(n, lambda r: r.msgs_per_sec * mb if r.msgs_per_sec else None), 1, 0.7),
        ("produce p99 latency ms",
         lambda n: med_produce(n, lambda r: 1000 * broker_bench.percentile(sorted(r.latencies), 99) if r.latencies else None), 2, None),
        ("produce brokers CPU, % of a core",
         lambda n: med_produce(n, lambda r: 100 * r.brokers_cpu / r.elapsed if r.elapsed else None), 0, None),
        ("consume msgs/s", lambda n: med_consume(n, lambda c: c[0] / c[1] if c[1] else None), 0, 0.7),
        ("consume MB/s", lambda n: med_consume(n, lambda c: c[0] * mb / c[1] if c[1] else None), 1, 0.7),
        ("consume brokers CPU, % of a core",
         lambda n: med_consume(n, lambda c: 100 * c[2] / c[1] if c[1] else None), 0, None),
    ]
    load_after = open("/proc/loadavg").read().split()[0]
    print()
    print("Security benchmark: SASL_SSL (SCRAM-SHA-512 over TLS) against PLAINTEXT, same 3-broker cluster")
    print(f"date:      {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(f"fjord:     commit {commit_line(root)}, release build; each broker listens on PLAIN and SECURE,")
    print("           replication over PLAIN; no authorizer; fresh cluster each round")
    print(f"client:    confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]}), "
          f"Python {platform.python_version()}; producer acks=all, at most {args.outstanding} unacknowledged;")
    print("           consumer: assign() to every partition from the beginning, librdkafka defaults")
    print(f"workload:  {args.size}-byte values, {args.partitions} partitions RF1 per listener, "
          f"{args.warmup:g} s warm-up then {args.secs:g} s of producing, then everything read back")
    print(f"rounds:    {args.rounds}, alternating which listener goes first; medians; load after {load_after}")
    print()
    line = "{:<34} {:>12} {:>12} {:>9}  {}"
    print(line.format("metric", "PLAINTEXT", "SASL_SSL", "ratio", "target"))
    print(line.format("-" * 34, "-" * 12, "-" * 12, "-" * 9, "------"))
    for label, fn, digits, target in rows:
        a, b = fn("PLAIN"), fn("SECURE")
        ratio = b / a if a and b is not None else None
        verdict = ""
        if target is not None and ratio is not None:
            verdict = f">={target} {'met' if ratio >= target else 'MISSED'}"
        print(line.format(label, fmt(a, digits), fmt(b, digits), fmt(ratio, 2), verdict))
    print()
    print("ratio = SASL_SSL / PLAINTEXT; throughput higher is better")
    return 0


if __name__ == "__main__":
    sys.exit(main())
