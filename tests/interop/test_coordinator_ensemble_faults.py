"""A 3-member coordinator ensemble under faults, with plain ZooKeeper
clients: concurrent writers (kazoo, a session each, a multi-host connect
string) and the register workload. Each scenario runs against a
fjord-coordinator ensemble and against the reference, Apache ZooKeeper 3.8
(see test_coordinator_ensemble.py for the ensemble fixture).

- kill -9 of the leader under concurrent writes: every acknowledged create
  is on every member afterwards, the members' trees have the same digest,
  every writer keeps its session and its ephemeral node.
- iptables isolation of a follower, then of the leader: the cut-off member
  closes its clients and takes no writes, the majority keeps going (a
  register workload stays linearizable), and the cut-off member catches up
  after healing.
- a member down while the others write far past their snapshot interval:
  on restart it catches up (on Fjord through a snapshot from the leader,
  which its log says) and agrees with the others.
"""

from __future__ import annotations

import socket
import subprocess
import time

from conftest import FJORD_BIN_DIR
from ensemble import Firewall, tree_digest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError
from register import RegisterWorkload
from test_coordinator_ensemble import check_history, create_register, ensemble, wait_progress  # noqa: F401
from znode_writers import ROOT, ZnodeWriters, children_on


def same_everywhere(ensemble, writers: ZnodeWriters) -> None:
    """Every acknowledged create is on every member, and the members agree."""
    acked = {p.rsplit("/", 1)[1] for _, p in writers.acked}
    for sid, m in ensemble.members.items():
        missing = acked - children_on(m.address)
        assert not missing, f"member {sid} lacks {len(missing)} acknowledged nodes, e.g. {sorted(missing)[:5]}"
    digests = {sid: tree_digest(m.address) for sid, m in ensemble.members.items()}
    assert len(set(digests.values())) == 1, f"members disagree: {digests}"


def test_acknowledged_writes_survive_a_leader_kill(ensemble):
    writers = ZnodeWriters(ensemble.address, clients=2).start()
    try:
        writers.wait_acks(0, 200, 30, "at the start")
        leader = ensemble.leader()
        assert leader is not None, ensemble.modes()
        ensemble.members[leader].kill()
        killed = time.monotonic()
        assert ensemble.wait_for_quorum(timeout=30) != leader
        writers.wait_acks(killed, 200, 60, "after the leader's kill")
        print(f"{ensemble.kind}: longest gap in acknowledgements after the kill: "
              f"{writers.longest_gap(killed - 0.5, time.monotonic()):.2f}s")
        ensemble.restart(leader)
        ensemble.wait_for_quorum(timeout=30)
    finally:
        writers.stop()
    print(f"{len(writers.acked)} creates acknowledged, {len(writers.unknown)} unknown")
    same_everywhere(ensemble, writers)


def pinned_client_fails(member, timeout: float = 30.0) -> str:
    """A client that may only use `member` cannot write within `timeout`:
    the member closes it and refuses it while it is cut off. Returns how
    it failed."""
    zk = KazooClient(hosts=member.address, timeout=4, connection_retry={"max_tries": -1, "delay": 0.2, "max_delay": 1.0})
    deadline = time.monotonic() + timeout
    try:
        try:
            zk.start(timeout=5)
        except KazooTimeoutError:
            return "refused a session"
        while time.monotonic() < deadline:
            try:
                zk.create(f"{ROOT}/pinned-", b"", sequence=True)
            except (KazooException, KazooTimeoutError) as e:
                return f"write failed: {e!r}"
            time.sleep(0.2)
        return ""
    finally:
        zk.stop()
        zk.close()


def test_isolating_a_follower_then_the_leader(ensemble):
    firewall = Firewall(ensemble)
    create_register(ensemble, "/register")
    writers = ZnodeWriters(ensemble.address, clients=2).start()
    register = RegisterWorkload(ensemble.address, "/register", clients=2, seed=11).start()
    try:
        writers.wait_acks(0, 100, 30, "at the start")
        leader = ensemble.leader()
        assert leader is not None, ensemble.modes()
        follower = next(sid for sid in ensemble.members if sid != leader)

        firewall.cut(follower)
        cut = time.monotonic()
        how = pinned_client_fails(ensemble.members[follower])
        assert how, f"cut-off member {follower} still took writes"
        print(f"{ensemble.kind}: client of the cut-off follower: {how}")
        writers.wait_acks(cut, 100, 60, "with a follower cut off")
        firewall.heal()
        ensemble.wait_for_quorum(timeout=60)

        leader = ensemble.leader()
        assert leader is not None, ensemble.modes()
        firewall.cut(leader)
        cut = time.monotonic()
        new_leader = ensemble.wait_for_quorum(timeout=60, without={leader})
        assert new_leader != leader
        how = pinned_client_fails(ensemble.members[leader])
        assert how, f"cut-off old leader {leader} still took writes"
        print(f"{ensemble.kind}: client of the cut-off leader: {how}")
        writers.wait_acks(cut, 100, 60, "with the leader cut off")
        wait_progress(register, cut, 20, 60, "with the leader cut off")
        firewall.heal()
        ensemble.wait_for_quorum(timeout=60)
        writers.wait_acks(time.monotonic(), 50, 60, "after healing")
    finally:
        firewall.close()
        ops = register.stop()
        writers.stop()
    check_history(ops, ensemble.kind)
    same_everywhere(ensemble, writers)


def test_a_member_far_behind_catches_up(ensemble):
    # Fjord members snapshot every 1,000 entries (--snapshot-txns below) and
    # keep at most that many behind a snapshot; ZooKeeper's leader keeps the
    # last 500 committed transactions for followers, and sends a snapshot to
    # one further behind.
    leader = ensemble.leader()
    down = next(sid for sid in ensemble.members if sid != leader)
    ensemble.members[down].kill()
    zk = KazooClient(hosts=ensemble.address, timeout=10)
    zk.start(timeout=30)
    try:
        zk.ensure_path("/far")
        for i in range(3000):
            zk.create(f"/far/n{i}", b"x" * 100)
    finally:
        zk.stop()
        zk.close()
    ensemble.restart(down)
    ensemble.wait_for_quorum(timeout=60)
    assert len(children_on(ensemble.members[down].address, "/far")) == 3000
    digests = {sid: tree_digest(m.address) for sid, m in ensemble.members.items()}
    assert len(set(digests.values())) == 1, f"members disagree: {digests}"
    if ensemble.fjord:
        log = ensemble.members[down].log_path.read_text(errors="replace")
        assert "installing a snapshot from the leader" in log, "the member did not catch up through a snapshot"


def voters(address: str) -> set[int]:
    """The voting members, from /zookeeper/config as one member shows it."""
    zk = KazooClient(hosts=address, timeout=10)
    zk.start(timeout=30)
    try:
        zk.sync("/zookeeper/config")
        text = zk.get("/zookeeper/config")[0].decode()
    finally:
        zk.stop()
        zk.close()
    return {int(line.split("=")[0].split(".")[1]) for line in text.splitlines() if line.startswith("server.") and "participant" in line}


def test_adding_a_fourth_member_and_removing_one_under_load(ensemble, tmp_path):
    writers = ZnodeWriters(ensemble.address, clients=2).start()
    try:
        writers.wait_acks(0, 100, 30, "at the start")
        sid, spec = ensemble.add_member(tmp_path / "more")
        zk = KazooClient(hosts=ensemble.address, timeout=10)
        zk.start(timeout=30)
        try:
            added = time.monotonic()
            zk.reconfig(joining=spec, leaving=None, new_members=None)
            assert voters(ensemble.address) == {1, 2, 3, sid}
            writers.wait_acks(added, 100, 60, "after adding a member")
            leader = ensemble.leader()
            gone = next(s for s in (1, 2, 3) if s != leader)
        finally:
            zk.stop()
            zk.close()
        # The removal goes through the member being removed, which never applies it.
        zk = KazooClient(hosts=ensemble.members[gone].address, timeout=10)
        zk.start(timeout=30)
        try:
            removed = time.monotonic()
            data, _ = zk.reconfig(joining=None, leaving=str(gone), new_members=None)
            assert f"server.{gone}=" not in data.decode(), data
        finally:
            zk.stop()
            zk.close()
        ensemble.forget(gone)
        assert voters(ensemble.address) == {1, 2, 3, sid} - {gone}
        writers.wait_acks(removed, 100, 60, "after removing a member")
        ensemble.wait_for_quorum(timeout=60)
    finally:
        writers.stop()
    same_everywhere(ensemble, writers)
    assert len(children_on(ensemble.members[sid].address)) >= len(writers.acked)


def test_fjord_peer_port_refuses_garbage_other_clusters_and_lost_data(tmp_path):
    """Fjord only (ZooKeeper has no such checks): garbage on a member's peer
    port and a member of another ensemble are turned away with a log line,
    and a member restarted on a wiped data directory under its old id is
    refused and stops with a message saying what to do; the ensemble serves
    on throughout, and the machine rejoins under a new id."""
    from ensemble import FjordEnsemble, free_port

    ens = FjordEnsemble(tmp_path / "ensemble")
    try:
        ens.start()
        leader = ens.wait_for_quorum()
        target = ens.members[leader]
        # Garbage: a frame length far over the limit, then noise.
        with socket.create_connection((target.host, target.quorum_port), timeout=5) as sock:
            sock.sendall(b"\xff\xff\xff\xf0" + b"garbage" * 100)
            sock.settimeout(5)
            assert sock.recv(100) == b"", "the peer port kept a garbage connection open"
        # A member of another ensemble: id 1 of a 2-member ensemble whose other member is
        # one of ours. It initializes its own ensemble and asks ours for votes.
        other = next(sid for sid in ens.members if sid != 1)
        host = "127.0.0.9"
        intruder_dir = tmp_path / "intruder"
        intruder_dir.mkdir()
        port = free_port(host)
        intruder = subprocess.Popen(
            [
                str(FJORD_BIN_DIR / "fjord-coordinator"),
                "--id", "1", "--listen", f"{host}:{free_port(host)}", "--peer-listen", f"{host}:{port}",
                "--peers", f"1={host}:{port},{other}={ens.members[other].host}:{ens.members[other].quorum_port}",
                "--cluster-id", "someone-else", "--data-dir", str(intruder_dir / "data"),
            ],
            stdout=subprocess.DEVNULL, stderr=open(intruder_dir / "log", "wb"),
        )
        try:
            deadline = time.monotonic() + 30
            while "someone-else" not in ens.members[other].log_path.read_text(errors="replace"):
                assert time.monotonic() < deadline, "no log line about the other ensemble's member"
                time.sleep(0.2)
            print("a member of another ensemble was turned away")
        finally:
            intruder.kill()
            intruder.wait(10)
        assert ens.wait_for_quorum(timeout=30) == leader

        # Lost data: a follower restarted on an empty data directory under its old id.
        writers = ZnodeWriters(ens.address, clients=1).start()
        try:
            writers.wait_acks(0, 50, 30, "at the start")
            victim = next(sid for sid in ens.members if sid != leader)
            m = ens.members[victim]
            m.kill()
            subprocess.run(["rm", "-rf", str(m.workdir / "data")], check=True)
            ens.restart(victim)
            m.process.wait(30)
            assert m.process.returncode not in (0, None), "the member with lost data kept running"
            log = m.log_path.read_text(errors="replace")
            assert "new data directory" in log and "new id" in log, log[-2000:]
            print(f"member {victim} on a wiped data directory exited with {m.process.returncode}")
            writers.wait_acks(time.monotonic(), 50, 30, "while the wiped member is refused")
            # The procedure the message gives: remove it, add the machine under a new id.
            zk = KazooClient(hosts=ens.address, timeout=10)
            zk.start(timeout=30)
            try:
                zk.reconfig(joining=None, leaving=str(victim), new_members=None)
                ens.forget(victim)
                sid, spec = ens.add_member(tmp_path / "replacement")
                zk.reconfig(joining=spec, leaving=None, new_members=None)
            finally:
                zk.stop()
                zk.close()
            writers.wait_acks(time.monotonic(), 50, 30, "after the replacement")
        finally:
            writers.stop()
        same_everywhere(ens, writers)
    finally:
        ens.stop()


def test_fjord_member_with_a_full_disk_stops_and_loses_nothing(tmp_path):
    """Fjord only: one follower's data directory is a 4 MiB tmpfs that fills
    up under large writes. That member stops (exits non-zero, saying why);
    the other two carry on, nothing acknowledged is lost, and once the disk
    has room again the member restarts and catches up."""
    from ensemble import FjordEnsemble

    ens = FjordEnsemble(tmp_path / "ensemble")
    victim = 3
    data = ens.members[victim].workdir / "data"
    data.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(data)], check=True)
    try:
        ens.start()
        writers = ZnodeWriters(ens.address, clients=1).start()
        try:
            writers.wait_acks(0, 50, 30, "at the start")
            zk = KazooClient(hosts=ens.address, timeout=10)
            zk.start(timeout=30)
            try:
                zk.create("/big", b"")
                blob = b"x" * 200_000
                deadline = time.monotonic() + 60
                n = 0
                while ens.members[victim].running:
                    assert time.monotonic() < deadline, "the member with a full disk did not stop"
                    n += 1
                    try:
                        zk.set("/big", blob)
                    except (KazooException, KazooTimeoutError):
                        time.sleep(0.1)
            finally:
                zk.stop()
                zk.close()
            m = ens.members[victim]
            assert m.process.returncode not in (0, None)
            log = m.log_path.read_text(errors="replace")
            assert "Raft log write or fsync failed" in log, log[-2000:]
            print(f"member {victim} stopped after {n} large writes: exit {m.process.returncode}")
            stopped = time.monotonic()
            writers.wait_acks(stopped, 100, 60, "with one member stopped")
            subprocess.run(["mount", "-o", "remount,size=512m", str(data)], check=True)
            ens.restart(victim)
            ens.wait_for_quorum(timeout=60)
            writers.wait_acks(time.monotonic(), 50, 60, "after the member came back")
        finally:
            writers.stop()
        same_everywhere(ens, writers)
    finally:
        ens.stop()
        subprocess.run(["umount", "-l", str(data)], check=False)
