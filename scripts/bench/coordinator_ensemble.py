"""`scripts/bench/coordinator --ensemble`: the coordinator workload against a
3-member fjord-coordinator ensemble and a 3-server ZooKeeper 3.8 ensemble on
this machine (one ensemble at a time, members on 127.0.0.2-4), then the
write gap after kill -9 of the leader, and a comparison table.

- throughput and latency: coord-bench (the zookeeper-client crate) with the
  multi-host connect string, so sessions spread over the members; creates
  and sets go through the leader, gets are served by each member locally.
  With one client, the session runs on each member in turn (see
  throughput()), so that the figure does not hang on one random placement.
- failover: one kazoo client writes (create) back to back through the
  multi-host connect string; the leader is killed with SIGKILL; the gap is
  the longest time without an acknowledged write from the last one before
  the kill until writes flow again (a write acknowledged just after the
  kill may have been committed before it, so the first acknowledgement
  after the kill does not end the gap by itself). Repeated --kills times
  with the killed member restarted in between; the table shows the median
  and the worst.

Run with the project's venv Python (scripts/test creates it); the bash
wrapper does that, and builds the release binaries first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("FJORD_BIN_DIR", str(ROOT / "target" / "release"))
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from ensemble import ENSEMBLES  # noqa: E402
from kazoo.client import KazooClient  # noqa: E402
from kazoo.exceptions import KazooException  # noqa: E402
from kazoo.handlers.threading import KazooTimeoutError  # noqa: E402

BENCH = ROOT / "target" / "release" / "coord-bench"


def log(msg: str) -> None:
    print(f"coordinator-bench --ensemble: {msg}", file=sys.stderr, flush=True)


def coord_bench(address: str, label: str, c: int, secs: float, warmup: float) -> list[dict]:
    r = subprocess.run(
        [
            str(BENCH), "--server", address, "--label", label, "--clients", str(c),
            "--threads", "1" if c == 1 else str(os.cpu_count() or 2),
            "--phases", "create,set,get", "--secs", str(secs), "--warmup-secs", str(warmup),
        ],
        capture_output=True, text=True, timeout=600,
    )
    if r.returncode != 0:
        raise RuntimeError(f"coord-bench failed on {label}: {r.stderr[-2000:]}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def throughput(ens, label: str, clients: list[int], secs: float, warmup: float) -> list[dict]:
    out = []
    for c in clients:
        if c != 1:
            out.extend(coord_bench(ens.address, label, c, secs, warmup))
            continue
        # One session lands on one member, and a write costs more through a follower
        # (one more hop each way) than through the leader, on ZooKeeper as on Fjord. So
        # that the figure does not depend on where one shuffle put the session, the
        # session runs on each member in turn; ops/s is over the three runs together and
        # the latency is the median of the three.
        runs = [coord_bench(m.address, label, 1, secs / len(ens.members) + 1, warmup)
                for m in ens.members.values()]
        for op in ("create", "set", "get"):
            rows = [row for run in runs for row in run if row.get("op") == op]
            if not rows:
                continue
            ops = sum(row["ops"] for row in rows)
            took = sum(row["secs"] for row in rows)
            out.append({**rows[0], "ops": ops, "secs": took, "ops_per_sec": ops / took,
                        "p50_us": statistics.median(row["p50_us"] for row in rows),
                        "placements": [round(row["ops_per_sec"]) for row in rows]})
    return out


def failover_gap(ens, kills: int) -> list[float]:
    """Write gaps (s) around kill -9 of the leader, one per kill."""
    gaps = []
    for k in range(kills):
        leader = ens.wait_for_quorum(timeout=60)
        acks: list[float] = []
        stop = threading.Event()
        zk = KazooClient(hosts=ens.address, timeout=10,
                         connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 0.5})
        zk.start(timeout=30)
        zk.ensure_path("/gap")

        def writer() -> None:
            n = 0
            while not stop.is_set() and n < 200_000:
                n += 1
                try:
                    zk.create(f"/gap/{k}-{n}", b"x")
                    acks.append(time.monotonic())
                except (KazooException, KazooTimeoutError):
                    time.sleep(0.01)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        time.sleep(2)
        killed = time.monotonic()
        ens.members[leader].kill()
        deadline = time.monotonic() + 60
        # Until writes flow again: 50 acknowledged after the kill.
        while sum(1 for a in acks[-60:] if a > killed) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        stop.set()
        t.join(30)
        zk.stop()
        zk.close()
        before = [a for a in acks if a <= killed]
        after = [a for a in acks if killed < a <= killed + 10]
        if before and after:
            points = [before[-1], *after]
            gaps.append(max(b - a for a, b in zip(points, points[1:])))
        else:
            gaps.append(float("inf"))
        ens.restart(leader)
        ens.wait_for_quorum(timeout=60)
    return gaps


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=float(os.environ.get("BENCH_SECS", 5)))
    ap.add_argument("--warmup", type=float, default=float(os.environ.get("BENCH_WARMUP_SECS", 1)))
    ap.add_argument("--clients", default=os.environ.get("BENCH_CLIENTS", "1,32"))
    ap.add_argument("--kills", type=int, default=int(os.environ.get("BENCH_KILLS", 5)))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",") if c]
    work = Path(tempfile.mkdtemp(prefix="fjord-ensemble-bench."))
    os.chmod(work, 0o755)
    results: dict[str, dict] = {}
    for kind in ("fjord", "zookeeper"):
        # Both at their servers' default snapshot interval (ZooKeeper's snapCount).
        ens = ENSEMBLES[kind](work / kind, snapshot_every=100_000)
        try:
            log(f"{kind}: starting 3 members")
            ens.start()
            # An unmeasured pass so that ZooKeeper's JIT has compiled the paths.
            throughput(ens, f"{kind}-warmup", [32], 3, 0)
            log(f"{kind}: throughput")
            rows = throughput(ens, kind, clients, args.secs, args.warmup)
            log(f"{kind}: {args.kills} leader kills")
            gaps = failover_gap(ens, args.kills)
            results[kind] = {"rows": rows, "gaps": gaps}
        finally:
            ens.stop()
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    else:
        log(f"kept {work}")

    def value(kind: str, op: str, c: int, key: str):
        for r in results[kind]["rows"]:
            if r.get("op") == op and r.get("clients") == c:
                return r.get(key)
        return None

    def line(metric, f, z, target=""):
        ratio = f"{f / z:.2f}" if isinstance(f, (int, float)) and isinstance(z, (int, float)) and z else "-"
        verdict = ""
        if target and ratio != "-":
            op, x = target[:2], float(target[2:])
            ok = float(ratio) >= x if op == ">=" else float(ratio) <= x
            verdict = f"{target} {'met' if ok else 'MISSED'}"
        fs = f"{f:.0f}" if isinstance(f, float) and f >= 100 else (f"{f:.2f}" if isinstance(f, float) else str(f))
        zs = f"{z:.0f}" if isinstance(z, float) and z >= 100 else (f"{z:.2f}" if isinstance(z, float) else str(z))
        print(f"{metric:<30} {fs:>12} {zs:>12} {ratio:>9}  {verdict}")

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print()
    print("Coordinator ensemble benchmark: 3 fjord-coordinator members vs 3 ZooKeeper 3.8 servers")
    print(f"date:      {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"machine:   {os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}; all members on this machine (127.0.0.2-4)")
    print(f"fjord:     commit {commit}, release build, election timeout 500 ms; zookeeper: tickTime 500, syncLimit 5")
    print(f"workload:  coord-bench over the multi-host connect string, {args.secs:g}s per phase; failover: {args.kills} kills")
    print()
    print(f"{'metric':<30} {'fjord':>12} {'zookeeper':>12} {'fjord/zk':>9}  target")
    for op, target in (("create", ">=1.5"), ("set", ">=1.5"), ("get", ">=2")):
        for c in clients:
            line(f"{op} {c}c ops/s", value("fjord", op, c, "ops_per_sec"), value("zookeeper", op, c, "ops_per_sec"), target)
            line(f"{op} {c}c p50 latency us", value("fjord", op, c, "p50_us"), value("zookeeper", op, c, "p50_us"))
    for kind in ("fjord", "zookeeper"):
        per = [f"{r['op']} {r['placements']}" for r in results[kind]["rows"] if "placements" in r]
        if per:
            print(f"  1 client, ops/s with the session on member 1, 2, 3 ({kind}): {'; '.join(per)}")
    fg, zg = results["fjord"]["gaps"], results["zookeeper"]["gaps"]
    print(f"{'write gap after leader kill, median s':<30}")
    line("  median gap s", statistics.median(fg), statistics.median(zg))
    line("  worst gap s", max(fg), max(zg))
    ok = max(fg) <= 2.0
    print(f"{'target: every gap <= 2 s':<30} {'met' if ok else 'MISSED'} (fjord gaps: {', '.join(f'{g:.2f}' for g in fg)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
