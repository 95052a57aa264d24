"""Unit tests of the consumer-group checks in groups.py, on made-up member
events (no cluster): each kind of violation is reported, and a clean
history with the duplicates at-least-once allows is not."""

from __future__ import annotations

from groups import (
    MemberProcess,
    check_consumption,
    double_owners,
    owners_by_generation,
    stable_assignment,
)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def history(*steps):
    """Events from (who, ev, fields) steps, one second apart."""
    clock = _Clock()
    return [{"t": clock(), "who": who, "ev": ev, **fields} for who, ev, fields in steps]


def assign(who, generation, partitions):
    return (who, "assign", {"generation": generation, "member": f"{who}-id", "partitions": partitions})


def revoke(who, generation, partitions):
    return (who, "revoke", {"generation": generation, "member": f"{who}-id", "partitions": partitions})


def records(who, partition, offsets):
    return (who, "records", {"records": [[partition, o, f"v{partition}-{o}"] for o in offsets]})


def commit(who, partition, offset):
    return (who, "commit", {"offsets": {str(partition): offset}})


def produced(partition, count):
    return {(partition, o): f"v{partition}-{o}" for o in range(count)}


def test_clean_handover_and_a_kill():
    """a reads 0..9 and commits 5 and dies; b takes over at 5 (5..9 twice,
    allowed: past the commit). Partition 1 moves from b to a cleanly."""
    events = history(
        assign("a", 1, [0]),
        assign("b", 1, [1]),
        records("a", 0, range(10)),
        commit("a", 0, 5),
        records("b", 1, range(4)),
        commit("b", 1, 4),
        revoke("b", 1, [1]),
        assign("b", 2, [0]),
        assign("c", 2, [1]),
        records("b", 0, range(5, 12)),
        records("c", 1, range(4, 6)),
    )
    result = check_consumption(events, {**produced(0, 12), **produced(1, 6)})
    assert result.ok, result.summary()
    assert result.duplicates == 5
    assert not double_owners(events)


def test_missing_messages():
    events = history(assign("a", 1, [0]), records("a", 0, range(3)))
    result = check_consumption(events, produced(0, 5))
    assert result.missing == [(0, 3), (0, 4)]
    assert not result.ok


def test_wrong_value():
    events = history(assign("a", 1, [0]), ("a", "records", {"records": [[0, 0, "other"]]}))
    result = check_consumption(events, produced(0, 1))
    assert result.wrong_value == [(0, 0, "v0-0", "other")]


def test_takeover_before_the_committed_offset():
    """b starts at 3 although 6 was committed: a commit lost."""
    events = history(
        assign("a", 1, [0]),
        records("a", 0, range(6)),
        commit("a", 0, 6),
        revoke("a", 1, [0]),
        assign("b", 2, [0]),
        records("b", 0, range(3, 8)),
    )
    result = check_consumption(events, produced(0, 8))
    assert [(r.who, r.offsets[0], r.committed_before) for r in result.reread_committed] == [("b", 3, 6)]
    assert not result.ok


def test_takeover_past_everything_read():
    """b starts at 9 with only 0..5 read before: 6..8 skipped (here also
    missing, but the start rule names the culprit)."""
    events = history(
        assign("a", 1, [0]),
        records("a", 0, range(6)),
        commit("a", 0, 6),
        revoke("a", 1, [0]),
        assign("b", 2, [0]),
        records("b", 0, range(9, 12)),
    )
    result = check_consumption(events, produced(0, 12))
    assert [(r.who, r.offsets[0]) for r in result.skipped_ahead] == [("b", 9)]
    assert result.missing == [(0, 6), (0, 7), (0, 8)]


def test_gap_within_an_ownership():
    events = history(assign("a", 1, [0]), records("a", 0, [0, 1, 2, 4, 5]))
    result = check_consumption(events, {**produced(0, 6)})
    assert [(a, b) for _run, a, b in result.run_gaps] == [(2, 4)]


def test_two_owners_in_one_generation():
    events = history(
        assign("a", 3, [0, 1]),
        assign("b", 3, [1, 2]),
        assign("a", 4, [2]),
        assign("b", 4, [0, 1]),
    )
    assert double_owners(events) == [(3, 1, ["a-id", "b-id"])]
    assert owners_by_generation(events)[4] == {"a-id": {2}, "b-id": {0, 1}}


class _Member:
    """A member's events without a process, read as MemberProcess reads them."""

    current = MemberProcess.current

    def __init__(self, name, *steps):
        self.name = name
        self._events = [{"t": 0.0, "who": name, "ev": ev, **fields} for _, ev, fields in steps]

    def events(self):
        return list(self._events)


def test_stable_assignment():
    a = _Member("a", assign("a", 2, [0, 1]))
    b = _Member("b", assign("b", 2, [2]))
    assert stable_assignment([a, b], 3) == {"a": [0, 1], "b": [2]}
    stale = _Member("b", assign("b", 1, [2]))
    assert stable_assignment([a, stale], 3) is None  # two generations
    revoked = _Member("b", assign("b", 2, [2]), revoke("b", 2, [2]))
    assert stable_assignment([a, revoked], 3) is None  # b owns nothing now
    assert stable_assignment([a, b], 4) is None  # partition 3 unowned
