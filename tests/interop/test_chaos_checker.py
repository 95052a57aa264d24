"""The chaos checker and history recorder on made-up histories: no server.

Each case is one way a replicated log can go wrong (or look wrong without
being wrong), and the checker must put it in exactly the right bucket.
"""

from __future__ import annotations

import threading

from chaos import Ack, History, check


def v(n: int) -> bytes:
    return str(n).encode()


def clean(p: int, count: int, start: int = 0) -> list[tuple[int, int, bytes]]:
    """Values start..start+count-1 at offsets 0..count-1 of partition p."""
    return [(p, i, v(start + i)) for i in range(count)]


def test_identical_history_is_clean():
    acked = clean(0, 100) + clean(1, 50, start=100)
    result = check(acked, acked, sent=[v(i) for i in range(150)])
    assert result.not_read == 0
    assert not result.conflicts
    assert not result.duplicates
    assert not result.gaps
    assert not result.unknown
    assert not result.double_acks
    assert result.unacked_stored == 0
    assert (result.acked, result.read) == (150, 150)
    assert "acknowledged but not read at their offset: 0" in result.summary()


def test_ack_objects_and_triples_are_the_same():
    acked = clean(0, 10)
    as_objects = [Ack(p, o, val, at=1.0) for p, o, val in acked]
    assert check(as_objects, acked) == check(acked, acked)


def test_stored_but_unacknowledged_is_allowed():
    """A write whose acknowledgement never came (timeout, crash) may be
    stored: counted, not an error."""
    read = clean(0, 10)
    result = check(read[:7], read, sent=[v(i) for i in range(12)])
    assert result.not_read == 0
    assert result.unacked_stored == 3
    assert not result.conflicts and not result.duplicates and not result.gaps


def test_lost_acknowledged_message():
    """The tail was acknowledged but a new leader never had it; nothing
    was written after: lost, no conflict."""
    acked = clean(0, 10)
    result = check(acked, acked[:8])
    assert [(a.offset, a.value) for a in result.lost] == [(8, v(8)), (9, v(9))]
    assert result.not_read == 2
    assert not result.moved
    assert not result.conflicts
    assert not result.gaps  # the log just ends earlier
    assert "lost 2" in result.summary()


def test_overwritten_acknowledgement_is_a_conflict_and_a_loss():
    """A deposed leader acknowledged offsets 5..6 that the new leader then
    filled with other values: two values at those offsets, and the
    acknowledged ones are gone."""
    acked = clean(0, 7)
    read = clean(0, 5) + [(0, 5, v(100)), (0, 6, v(101))]
    acked_new = [(0, 5, v(100)), (0, 6, v(101))]
    result = check(acked + acked_new, read)
    assert set(result.conflicts) == {(0, 5), (0, 6)}
    assert result.conflicts[(0, 5)] == {v(5): {"ack"}, v(100): {"ack", "read"}}
    assert [a.value for a in result.lost] == [v(5), v(6)]


def test_two_acknowledgements_for_one_offset():
    """Two leaders each acknowledged a different value at offset 3, and
    the read-back holds one of them."""
    acked = clean(0, 4) + [(0, 3, v(50))]
    read = clean(0, 4)
    result = check(acked, read)
    assert set(result.conflicts) == {(0, 3)}
    assert result.conflicts[(0, 3)] == {v(3): {"ack", "read"}, v(50): {"ack"}}
    assert [a.value for a in result.lost] == [v(50)]


def test_acknowledged_value_found_at_another_offset():
    """Offsets 3 and 4 swapped: each value is stored, but not where it was
    acknowledged."""
    acked = clean(0, 6)
    read = clean(0, 3) + [(0, 3, v(4)), (0, 4, v(3)), (0, 5, v(5))]
    result = check(acked, read)
    assert not result.lost
    assert {a.value: where for a, where in result.moved.items()} == {
        v(3): [(0, 4)],
        v(4): [(0, 3)],
    }
    assert result.not_read == 2
    assert set(result.conflicts) == {(0, 3), (0, 4)}
    assert not result.duplicates


def test_duplicate_is_reported_without_loss():
    """A retried batch appended twice: the value is at its acknowledged
    offset and once more later."""
    acked = clean(0, 5)
    read = clean(0, 5) + [(0, 5, v(2))]
    result = check(acked, read)
    assert result.not_read == 0
    assert result.duplicates == {v(2): [(0, 2), (0, 5)]}
    assert not result.conflicts


def test_duplicate_under_a_newer_epoch_is_the_clients_renumbering():
    """The second copy carries a newer epoch of the same producer id (the
    client renumbered it after an epoch bump): set apart, not a failure. A
    copy under the same epoch, another producer id, or an unknown stamp
    stays a duplicate."""
    acked = clean(0, 6)
    read = clean(0, 6) + [(0, 6, v(1)), (0, 7, v(2)), (0, 8, v(3)), (0, 9, v(4))]
    stamps = {
        (0, 1): (7, 0, 1), (0, 6): (7, 1, 0),  # renumbered
        (0, 2): (7, 0, 2), (0, 7): (7, 0, 2),  # the same batch stored twice
        (0, 3): (7, 0, 3), (0, 8): (8, 0, 0),  # another producer id
        (0, 4): (7, 0, 4),  # the second copy's stamp is unknown
    }
    result = check(acked, read)
    result.classify_duplicates(lambda p, o: stamps.get((p, o)))
    assert result.renumbered == {v(1): [(0, 1, 7, 0, 1), (0, 6, 7, 1, 0)]}
    assert set(result.duplicates) == {v(2), v(3), v(4)}


def test_duplicate_across_partitions():
    acked = clean(0, 3) + clean(1, 3, start=3)
    read = acked + [(1, 3, v(0))]
    result = check(acked, read)
    assert result.duplicates == {v(0): [(0, 0), (1, 3)]}


def test_double_ack_of_one_value():
    acked = clean(0, 3) + [(0, 3, v(1))]
    read = clean(0, 3) + [(0, 3, v(1))]
    result = check(acked, read)
    assert result.double_acks == {v(1): [(0, 1), (0, 3)]}
    assert result.duplicates == {v(1): [(0, 1), (0, 3)]}
    assert result.not_read == 0


def test_gaps_inside_and_at_the_start():
    read = [(0, o, v(o)) for o in (2, 3, 4, 7, 8, 12)]
    result = check([], read)
    assert result.gaps == {0: [(0, 1), (5, 6), (9, 11)]}
    assert check([], read, first_offset=None).gaps == {0: [(5, 6), (9, 11)]}
    assert check([], read, first_offset=2).gaps == {0: [(5, 6), (9, 11)]}


def test_unknown_values_only_with_sent():
    read = clean(0, 3) + [(0, 3, b"garbage")]
    assert check([], read).unknown == []
    assert check([], read, sent=[v(i) for i in range(3)]).unknown == [(0, 3, b"garbage")]


def test_reading_one_position_twice_with_one_value_is_not_a_conflict():
    read = clean(0, 3) + [(0, 1, v(1))]
    result = check(clean(0, 3), read)
    assert not result.conflicts and not result.duplicates and result.not_read == 0


def test_summary_names_examples():
    acked = clean(0, 20)
    result = check(acked, acked[:3])
    text = result.summary(examples=2)
    assert "lost 17" in text
    assert "(17 in all)" in text


def test_history_records_from_many_threads():
    history = History()

    def work(base: int) -> None:
        for i in range(1000):
            history.record_sent(v(base + i))
            if i % 10 == 0:
                history.record_failure(v(base + i), 0, "NOT_ENOUGH_REPLICAS")
            else:
                history.record_ack(0, base + i, v(base + i))

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    sent, acks, failures = history.snapshot()
    assert len(sent) == 4000
    assert len(acks) == 3600
    assert len(failures) == 400
    assert {f.error for f in failures} == {"NOT_ENOUGH_REPLICAS"}
    assert len({a.value for a in acks}) == 3600


def test_history_time_queries():
    history = History()
    start = history.note("start")
    history.record_ack(0, 0, v(0))
    mark = history.note("kill")
    history.record_ack(1, 0, v(1))
    history.record_ack(0, 1, v(2))
    end = history.note("end")
    assert [a.value for a in history.acks_after(mark)] == [v(1), v(2)]
    assert [a.value for a in history.acks_after(mark, partition=0)] == [v(2)]
    assert history.acks_after(end) == []
    gap = history.longest_ack_gap(start, end)
    assert 0 <= gap <= end - start
    assert "kill" in history.timeline()
    assert History().timeline() == "(no events)"
    assert History().longest_ack_gap(1.0, 3.5) == 2.5


def test_implicit_acknowledgement_without_an_offset():
    """librdkafka acknowledges the messages of a timed-out request without
    an offset once a later request succeeds: stored once anywhere in their
    partition is right, missing is a loss, elsewhere is a move."""
    read = clean(0, 6)
    acked = [Ack(0, None, v(2)), Ack(0, None, v(3))] + [Ack(0, o, v(o)) for o in (0, 1, 4, 5)]
    result = check(acked, read)
    assert result.not_read == 0 and not result.conflicts and result.unacked_stored == 0

    result = check(acked, [r for r in read if r[2] != v(3)] + [(1, 0, v(3))])
    assert list(result.moved.values()) == [[(1, 0)]]

    result = check(acked + [Ack(0, None, v(9))], read)
    assert [a.value for a in result.lost] == [v(9)]

    result = check(acked, read + [(0, 6, v(2))])
    assert result.duplicates == {v(2): [(0, 2), (0, 6)]}
