"""Driver of `scripts/bench/console`: what serving the web console to one open browser
costs the cluster, in produce throughput.

One 3-broker Fjord cluster (release build) and a confluent-kafka producer (1 KiB values,
acks=all, at most `--outstanding` unacknowledged) into a topic of 3 partitions, RF3.
Each round produces for `--secs` seconds (after a warm-up) twice: once with nothing else
running, once with `fjord console` running and a headless Chromium showing its Overview
page (live over server-sent events: metadata every second, groups and the coordinator's
members every few seconds), alternating which goes first. The table shows medians over
the rounds and the ratio; the target is a cost under 2% (a ratio of at least 0.98).
Everything shares the machine's CPUs, the browser included, as an operator's laptop
would.
"""

from __future__ import annotations

import argparse
import re
import shutil
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
from confluent_kafka import Producer  # noqa: E402

PROG = "console-bench"


def log(message: str) -> None:
    broker_bench.log(PROG, message)


class Console:
    """`fjord console` and a headless Chromium on its Overview page."""

    def __init__(self, bin_dir: Path, cluster: Cluster, work: Path):
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        out = work / "console-stdout.txt"
        with open(out, "wb") as o, open(work / "console.log", "ab") as e:
            self.process = subprocess.Popen(
                [str(bin_dir / "fjord"), "--bootstrap", cluster.bootstrap, "--coordinator",
                 cluster.coordinator.address, "console", "--listen", "127.0.0.1:0"],
                stdin=subprocess.DEVNULL, stdout=o, stderr=e,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            m = re.search(r"^listening on (\S+)$", out.read_text(errors="replace"), re.M)
            if m:
                self.url = f"http://{m.group(1)}/"
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the console did not start; see {work / 'console.log'}")
            time.sleep(0.1)
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        options = Options()
        for arg in ("--headless=new", "--no-sandbox", "--disable-background-networking",
                    "--disable-dev-shm-usage", "--disable-gpu", f"--user-data-dir={work / 'profile'}"):
            options.add_argument(arg)
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        self.driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                                       options=options)
        self.driver.get(self.url)
        deadline = time.monotonic() + 15
        while "on" not in (self.driver.find_element("id", "live-status").get_attribute("class") or ""):
            if time.monotonic() > deadline:
                raise BenchError("the console page did not connect its live stream")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """The console and every Chromium process."""
        found = [self.process.pid]
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                exe = (proc / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if b"chrom" in exe:
                found.append(int(proc.name))
        return found

    def stop(self) -> None:
        try:
            self.driver.quit()
        finally:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(prog=PROG)
    parser.add_argument("--root", required=True)
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--load-before", default="?")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--secs", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--outstanding", type=int, default=10000)
    args = parser.parse_args()
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        raise BenchError("chromium and chromium-driver are needed (apt-get install chromium chromium-driver)")
    root, work, bin_dir = Path(args.root), Path(args.work), Path(args.bin_dir)
    cluster = Cluster(PROG, bin_dir, work / "cluster", work / "pids", 3)
    payload = b"x" * 1024
    results: dict[str, list] = {"without": [], "with": []}
    cpu: dict[str, list] = {"without": [], "with": []}
    viewer: dict[str, list] = {"without": [], "with": []}
    try:
        cluster.start()
        logger = client_logger(work / "client.log", "bench")
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "logger": logger,
                             "linger.ms": 5})
        for r in range(args.rounds):
            order = ["without", "with"] if r % 2 == 0 else ["with", "without"]
            for mode in order:
                # A fresh topic per phase, deleted after it: the disk does not fill up, and
                # every phase writes into the same empty state.
                topic = f"bench-{r}-{mode}"
                cluster.fjord("topics", "create", topic, "--partitions", "3", "--replication-factor", "3")
                cluster.wait_for_partitions(topic, 3, 3, STARTUP_TIMEOUT)
                console = Console(bin_dir, cluster, work / f"console-{r}") if mode == "with" else None
                try:
                    if console is not None:
                        # Chromium's start-up work is done; what is measured is the page.
                        time.sleep(10)
                    produce_phase(producer, topic, payload, args.warmup, 0, args.outstanding,
                                  args.warmup, 60)
                    before = sum(cpu_seconds(b.pid) for b in cluster.brokers.values())
                    extra = console.pids() if console is not None else []
                    extra_before = sum(cpu_seconds(p) for p in extra)
                    result = produce_phase(producer, topic, payload, args.secs, 0, args.outstanding,
                                           600, 60)
                    cpu[mode].append(sum(cpu_seconds(b.pid) for b in cluster.brokers.values()) - before)
                    viewer[mode].append(sum(cpu_seconds(p) for p in extra) - extra_before)
                finally:
                    if console is not None:
                        console.stop()
                    cluster.fjord("topics", "delete", topic)
                if result.failed:
                    raise BenchError(f"{result.failed} produce(s) failed: {result.errors}")
                results[mode].append(result.msgs_per_sec)
                log(f"round {r + 1}/{args.rounds}: {mode} the console: {fmt(result.msgs_per_sec)} msgs/s")
    finally:
        cluster.kill_all()

    without, with_ = median(results["without"]), median(results["with"])
    print()
    print("# Produce throughput with and without the web console open in a browser")
    for line in machine_lines(work, args.load_before):
        print(line)
    print(commit_line(root))
    print(f"3 brokers, RF3, 1 KiB values, acks=all, {args.rounds} rounds of {args.secs:.0f} s, medians")
    print()
    print("| | msgs/s | brokers' CPU s | console + browser CPU s | rounds |")
    print("|---|---:|---:|---:|---|")
    for mode, label in (("without", "no console"), ("with", "console + Chromium on the Overview")):
        print(f"| {label} | {fmt(median(results[mode]))} | {fmt(median(cpu[mode]), 2)} | "
              f"{fmt(median(viewer[mode]), 2)} | {', '.join(fmt(v) for v in results[mode])} |")
    ratio = with_ / without if without else 0
    print()
    print(f"ratio {ratio:.3f}: the console costs {max(0.0, (1 - ratio) * 100):.1f}% of the produce throughput "
          f"(target: under 2%, {'met' if ratio >= 0.98 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    broker_bench.run_main(main, log)
