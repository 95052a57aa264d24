"""Unit tests of the register linearizability checker (linearizable.py)."""

from __future__ import annotations

import pytest
from linearizable import UNKNOWN, Op, check

START = (b"0", 0)


def read(client, t0, t1, value, version):
    return Op(client, "read", t0, t1, result=(value, version))


def write(client, t0, t1, value, version=UNKNOWN):
    return Op(client, "write", t0, t1, value=value, result=version)


def cas(client, t0, t1, value, expected, version=UNKNOWN):
    return Op(client, "cas", t0, t1, value=value, expected=expected, result=version)


def test_a_sequential_history_is_linearizable():
    ops = [
        write(1, 0, 1, b"a", 1),
        read(2, 2, 3, b"a", 1),
        cas(1, 4, 5, b"b", 1, 2),
        cas(2, 6, 7, b"c", 1, None),  # BADVERSION: the version is 2 now
        read(1, 8, 9, b"b", 2),
    ]
    assert check(ops, START).ok


def test_a_stale_read_after_a_completed_write_is_not():
    ops = [write(1, 0, 1, b"a", 1), read(2, 2, 3, b"0", 0)]
    verdict = check(ops, START)
    assert not verdict.ok
    assert "read" in verdict.explain()


def test_a_read_concurrent_with_a_write_may_see_either_value():
    for seen in [(b"0", 0), (b"a", 1)]:
        assert check([write(1, 0, 10, b"a", 1), read(2, 2, 3, *seen)], START).ok


def test_reads_may_not_go_back_in_time():
    # Two reads during one write: once the new value was seen, a later read
    # (invoked after the first returned) cannot see the old one.
    ops = [write(1, 0, 10, b"a", 1), read(2, 2, 3, b"a", 1), read(3, 4, 5, b"0", 0)]
    assert not check(ops, START).ok


def test_an_unknown_write_may_take_effect_late_or_never():
    late = [write(1, 0, 1, b"a"), read(2, 5, 6, b"0", 0), read(2, 7, 8, b"a", 1)]
    assert check(late, START).ok
    never = [write(1, 0, 1, b"a"), read(2, 5, 6, b"0", 0)]
    assert check(never, START).ok
    # ... but not before it was invoked.
    early = [read(2, 0, 1, b"a", 1), write(1, 2, 3, b"a")]
    assert not check(early, START).ok


def test_an_acknowledged_write_must_take_effect():
    ops = [write(1, 0, 1, b"a", 1), write(2, 2, 3, b"b", 2), read(3, 4, 5, b"a", 1)]
    assert not check(ops, START).ok


def test_cas_answers_must_match_the_version():
    # A cas at version 0 that claims success after another write made it
    # version 1 cannot be placed.
    ops = [write(1, 0, 1, b"a", 1), cas(2, 2, 3, b"b", 0, 1)]
    assert not check(ops, START).ok
    # Concurrent cas at the same version: only one can succeed.
    both = [cas(1, 0, 5, b"a", 0, 1), cas(2, 0, 5, b"b", 0, 1)]
    assert not check(both, START).ok
    one = [cas(1, 0, 5, b"a", 0, 1), cas(2, 0, 5, b"b", 0, None)]
    assert check(one, START).ok


def test_unknown_reads_are_dropped_and_many_clients_are_searched():
    ops = [Op(9, "read", 0, 0)]  # never answered
    t = 0.0
    version = 0
    for i in range(60):
        # Three clients with overlapping writes and reads, all consistent.
        version += 1
        ops.append(write(i % 3, t, t + 2, b"%d" % i, version))
        ops.append(read((i + 1) % 3, t + 2.5, t + 3, b"%d" % i, version))
        t += 3
    assert check(ops, START).ok


def test_an_unsupported_kind_is_an_error():
    with pytest.raises(ValueError):
        check([Op(1, "delete", 0, 1, result=0)], START)
