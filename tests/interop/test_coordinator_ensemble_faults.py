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

import time

import pytest
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
            removed = time.monotonic()
            zk.reconfig(joining=None, leaving=str(gone), new_members=None)
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
