"""Consumer groups with real clients against three brokers: the classic
group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), committed
offsets in the replicated `__consumer_offsets` topic, and the group admin
APIs.

- confluent-kafka members, each in a process of its own (group_member.py),
  share an 8-partition topic two partitions each; one is killed with
  kill -9 and the other three take its partitions over within its session
  timeout plus a rebalance, starting at its committed offsets;
- two groups on one topic each receive every message;
- kafka-python with auto-commit resumes, after a restart, at the offset
  it committed on close;
- kcat's balanced consumer (-G) reads everything and commits it;
- committed offsets survive kill -9 of the group's coordinator;
- AdminClient lists, describes and deletes groups.

Members report what they were assigned (with the generation), processed
and committed (groups.py checks it): no partition has two owners in one
generation, every produced message is processed, and nothing before a
committed offset is processed again.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from chaos import History, Workload
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from conftest import BROKER_SESSION_TIMEOUT_MS
from groups import (
    GROUP_FLAGS,
    MEMBER_SESSION_MS,
    MemberProcess,
    acked_positions,
    all_events,
    check_consumption,
    committed_offsets,
    describe_events,
    double_owners,
    member_logs,
    offsets_partition,
    offsets_topic_ready,
    owners_by_generation,
    produced_values,
    wait_processed,
    wait_stable,
)
from kafka_helpers import (
    KCAT,
    RDKAFKA_LOG,
    WAIT,
    admin_client,
    admin_results,
    create_replicated_topic,
    fully_replicated,
    high_watermarks,
    produce,
    wait_for,
    wait_for_partitions,
)

# After a member's session expires: the survivors learn of the rebalance
# from their next heartbeat (1 s apart), rejoin, and the leader's
# assignment goes through SyncGroup (written to __consumer_offsets). Debug
# builds on two cores.
REBALANCE = 8.0
MEMBER_SESSION = MEMBER_SESSION_MS / 1000
BROKER_SESSION = BROKER_SESSION_TIMEOUT_MS / 1000
# From kill -9 of a broker to a new leader of its partitions.
ELECTION = BROKER_SESSION + 8


def start(kafka_cluster, **flags):
    return kafka_cluster(brokers=3, **{**GROUP_FLAGS, **flags})


def group_consumer(bootstrap: str, group: str, **config) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": MEMBER_SESSION_MS,
            "heartbeat.interval.ms": 1000,
            "enable.partition.eof": False,
            **RDKAFKA_LOG,
            **config,
        }
    )


def topic_with_messages(cluster, topic: str, partitions: int, count: int, prefix: bytes):
    """Creates `topic` (RF3, min.insync.replicas=2), makes sure
    `__consumer_offsets` is ready, and writes `count` values
    `<prefix>-<i>` round robin over its partitions with acks=all.
    Returns the delivery reports."""
    create_replicated_topic(cluster, topic, partitions, 3, min_insync_replicas=2)
    offsets_topic_ready(cluster)
    delivered, failed = produce(
        cluster.bootstrap,
        topic,
        [(None, b"%s-%d" % (prefix, i), None, i % partitions) for i in range(count)],
        acks="all",
    )
    assert not failed
    return delivered


def describe_group(bootstrap: str, group: str):
    admin = admin_client(bootstrap)
    return admin.describe_consumer_groups([group])[group].result(timeout=WAIT)


def test_four_members_share_eight_partitions_and_survive_kill_9_of_one(kafka_cluster, tmp_path):
    """Four confluent-kafka members (four processes) on an 8-partition RF3
    topic under a steady producer get two partitions each in one
    generation. kill -9 of one: within its session timeout plus a
    rebalance the other three own all eight; every produced message is
    processed; the dead member's partitions resume at its committed
    offsets (records it processed and had not committed may come twice,
    nothing before them); no partition ever has two owners in one
    generation."""
    cluster = start(kafka_cluster)
    topic, group = "group-shared", "group-shared-g"
    create_replicated_topic(cluster, topic, 8, 3, min_insync_replicas=2)
    offsets_topic_ready(cluster)

    history = History()
    workload = Workload(cluster.bootstrap, topic, history, partitions=8, per_second=200).start()
    # The one to be killed commits at most every 2 s, so that it dies with
    # records processed and not committed: those, and only those, may be
    # processed again by the member that takes its partition over.
    members = [
        MemberProcess(
            tmp_path,
            f"member-{i}",
            cluster.bootstrap,
            group,
            topic,
            session_timeout_ms=MEMBER_SESSION_MS,
            commit_interval_ms=2000 if i == 0 else 0,
        ).start()
        for i in range(4)
    ]
    try:
        stable = wait_stable(members, 8, 60, "four members owning 8 partitions in one generation")
        print(f"assignment of the four: {stable}")
        assert sorted(len(p) for p in stable.values()) == [2, 2, 2, 2], stable
        # Every member processes (and commits) in that generation for a
        # while.
        time.sleep(3)
        _, acks, _ = history.snapshot()
        wait_processed(members, acked_positions(acks), 30, "caught up with four members")

        victim, survivors = members[0], members[1:]
        victim_parts = stable[victim.name]
        # Kill it once it has processed records it has not committed yet.
        wait_for(lambda: _uncommitted(victim.events()), 10, f"{victim.name} with uncommitted records")
        killed = time.monotonic()
        history.note(f"kill -9 {victim.name}, owner of {victim_parts}")
        victim.kill()
        # Nobody commits the dead member's partitions before they are
        # assigned again (its session has 6 s to run): these are the
        # offsets the next owners must start at.
        left_at = committed_offsets(cluster.bootstrap, group, topic, 8)
        assert time.monotonic() - killed < MEMBER_SESSION, "committed offsets read too late"
        left_at = {p: left_at[p] for p in victim_parts}
        print(f"{victim.name} killed; committed offsets of its partitions: {left_at}")
        after = wait_stable(
            survivors, 8, MEMBER_SESSION + REBALANCE + 20, "the three survivors owning all 8"
        )
        took = max(e["t"] for e in all_events(survivors) if e["ev"] == "assign") - killed
        print(f"assignment of the three: {after}; {took:.1f}s after the kill")
        assert sorted(len(p) for p in after.values()) == [2, 3, 3], after
        assert took <= MEMBER_SESSION + REBALANCE, (
            f"the survivors owned every partition {took:.1f}s after the kill, more than the "
            f"session timeout {MEMBER_SESSION:.0f}s + {REBALANCE:.0f}s"
        )

        # Consumption goes on: more messages produced after the
        # rebalance, then everything must be processed.
        moved = history.note("rebalanced")
        wait_for(
            lambda: all(len(history.acks_after(moved, p)) >= 20 for p in range(8)),
            30,
            "production after the rebalance",
        )
        assert workload.stop(flush_timeout=60) == 0
        _, acks, failures = history.snapshot()
        assert not failures, f"failed deliveries: {failures[:5]}"
        wait_processed(members, acked_positions(acks), 60, "everything processed")
        for m in survivors:
            assert m.stop() == 0, f"{m.name} did not exit cleanly:\n{m.log_tail()}"
    except BaseException:
        print(member_logs(members))
        raise
    finally:
        workload._stop.set()
        for m in members:
            m.kill()

    events = all_events(members)
    print(describe_events(events))
    produced, lost, _ = produced_values(cluster.bootstrap, topic, 8, acks)
    assert not lost, f"acknowledged without an offset and not in the topic: {lost[:10]}"
    result = check_consumption(events, produced)
    print(result.summary())
    report = f"{result.summary()}\n{describe_events(events)}"
    assert None not in owners_by_generation(events), f"an assignment without generation:\n{report}"
    twice_owned = double_owners(events)
    assert not twice_owned, f"partitions with two owners in one generation: {twice_owned}\n{report}"
    assert result.ok, report
    # The dead member's partitions: the next owner started exactly at the
    # offsets committed when it died, so it processed again exactly what
    # the dead member had processed past them. Nothing else was processed
    # twice (the survivors commit before handing a partition over).
    takeovers = [
        r for r in result.runs if r.partition in left_at and r.assigned_at > killed and r.offsets
    ]
    for p, committed in left_at.items():
        first = min((r for r in takeovers if r.partition == p), key=lambda r: r.assigned_at)
        assert first.offsets[0] == committed, (
            f"partition {p}: {first.who} took over at offset {first.offsets[0]}, "
            f"the committed offset was {committed}\n{report}"
        )
    victim_uncommitted = {
        (p, o)
        for e in victim.events()
        if e["ev"] == "records"
        for p, o, _ in e["records"]
        if o >= left_at[p]
    }
    twice = _positions_processed_twice(events)
    print(
        f"processed twice: {len(twice)}; processed by {victim.name} past its commits: "
        f"{len(victim_uncommitted)}"
    )
    assert twice == victim_uncommitted, (
        f"processed twice: {sorted(twice)[:10]} ({len(twice)}); processed by {victim.name} "
        f"past its committed offsets {left_at}: {sorted(victim_uncommitted)[:10]} "
        f"({len(victim_uncommitted)})"
    )
    # The survivors committed everything on the way out.
    marks = high_watermarks(cluster.bootstrap, topic, range(8))
    assert committed_offsets(cluster.bootstrap, group, topic, 8) == marks


def _uncommitted(events) -> bool:
    """Whether a member's last records came after its last commit."""
    last = {e["ev"]: e["t"] for e in events}
    return last.get("records", 0) > last.get("commit", 0)


def _positions_processed_twice(events) -> set[tuple[int, int]]:
    seen, twice = set(), set()
    for e in events:
        if e["ev"] == "records":
            for p, o, _ in e["records"]:
                (twice if (p, o) in seen else seen).add((p, o))
    return twice


class GroupReader:
    """A confluent-kafka group member with the client's defaults
    (auto-commit, offsets stored as messages are handed over) polled on a
    thread of its own; records what it was assigned and what it read."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, **config) -> None:
        self.name = name
        self.consumer = group_consumer(bootstrap, group, **{"client.id": name, **config})
        self.assignments: list[list[int]] = []
        self.records: list[tuple[int, int, bytes | None]] = []
        self.errors: list[KafkaError] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.consumer.subscribe([topic], on_assign=self._on_assign)
        self._thread = threading.Thread(target=self._run, name=f"reader-{name}", daemon=True)
        self._thread.start()

    def _on_assign(self, _consumer, partitions) -> None:
        with self._lock:
            self.assignments.append(sorted(tp.partition for tp in partitions))

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None:
                continue
            with self._lock:
                if msg.error() is not None:
                    self.errors.append(msg.error())
                else:
                    self.records.append((msg.partition(), msg.offset(), msg.value()))

    @property
    def owned(self) -> list[int]:
        with self._lock:
            return self.assignments[-1] if self.assignments else []

    def snapshot(self) -> list[tuple[int, int, bytes | None]]:
        with self._lock:
            return list(self.records)

    def close(self) -> None:
        """Stop polling and close: commits what was read, leaves the group."""
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), f"{self.name}: poll thread did not stop"
        self.consumer.close()


def wait_owned(readers, partitions: int, timeout: float, what: str) -> dict[str, list[int]]:
    """Wait until the readers' latest assignments split 0..partitions-1
    among them, each owning some."""

    def split():
        owned = {r.name: r.owned for r in readers}
        flat = sorted(p for ps in owned.values() for p in ps)
        return owned if flat == list(range(partitions)) and all(owned.values()) else None

    return wait_for(split, timeout, what)


def test_two_groups_each_receive_every_message(kafka_cluster):
    """The groups oms-events-wms and oms-events-billing, two members each,
    on the topic oms-events: each group receives every message exactly
    once (the partitions are split inside a group, not across groups),
    and each commits on close where it stopped."""
    cluster = start(kafka_cluster)
    topic, partitions = "oms-events", 4
    create_replicated_topic(cluster, topic, partitions, 3, min_insync_replicas=2)
    offsets_topic_ready(cluster)
    groups = ["oms-events-wms", "oms-events-billing"]
    readers = {
        g: [GroupReader(cluster.bootstrap, g, topic, f"{g}-{i}") for i in range(2)] for g in groups
    }
    try:
        for g in groups:
            owned = wait_owned(readers[g], partitions, 40, f"{g}: both members owning partitions")
            print(f"{g}: {owned}")
        delivered, failed = produce(
            cluster.bootstrap,
            topic,
            [(b"order-%d" % (i % 97), b"event-%d" % i) for i in range(4000)],
            acks="all",
            **{"enable.idempotence": True},
        )
        assert not failed and len(delivered) == 4000
        produced = sorted((r.partition, r.offset, r.value) for r in delivered)
        assert {p for p, _, _ in produced} == set(range(partitions)), "every partition gets messages"

        for g in groups:
            wait_for(
                lambda: sum(len(r.snapshot()) for r in readers[g]) >= len(produced),
                60,
                f"{g}: all {len(produced)} messages received",
            )
    finally:
        for g in groups:
            for r in readers[g]:
                r.close()

    for g in groups:
        got = sorted(rec for r in readers[g] for rec in r.snapshot())
        assert got == produced, (
            f"{g}: {len(got)} records, {len(set(got))} distinct, {len(produced)} produced; "
            f"missing {sorted(set(produced) - set(got))[:5]}, extra {sorted(set(got) - set(produced))[:5]}"
        )
        for r in readers[g]:
            assert not r.errors, f"{r.name}: {r.errors[:5]}"
            # What a member read, it read from partitions it owned.
            assert {p for p, _, _ in r.snapshot()} <= set(r.owned), (r.name, r.assignments)
        assert committed_offsets(cluster.bootstrap, g, topic, partitions) == high_watermarks(
            cluster.bootstrap, topic, range(partitions)
        ), f"{g}: committed offsets are not the log ends"


def test_kafka_python_auto_commit_resumes_after_restart(kafka_cluster):
    """kafka-python, a group member with auto-commit: it reads part of a
    3-partition topic and closes (which commits the offsets of what it
    read); a new member of the group, after a restart, resumes exactly
    there: nothing skipped, nothing read before the committed offsets."""
    from kafka import KafkaConsumer

    cluster = start(kafka_cluster)
    topic, group, partitions = "kp-resume", "kp-resume-g", 3
    delivered = topic_with_messages(cluster, topic, partitions, 900, b"kp")
    produced = {(r.partition, r.offset): r.value for r in delivered}

    def member():
        return KafkaConsumer(
            topic,
            bootstrap_servers=cluster.bootstrap.split(","),
            group_id=group,
            client_id="kp-member",
            enable_auto_commit=True,
            auto_commit_interval_ms=500,
            auto_offset_reset="earliest",
            session_timeout_ms=MEMBER_SESSION_MS,
            heartbeat_interval_ms=1000,
            request_timeout_ms=20000,
        )

    def read(consumer, count: int | None, timeout: float):
        """Poll until `count` records (None: until every partition is read
        to its end); returns [(partition, offset, value)]."""
        got = []
        deadline = time.monotonic() + timeout
        while count is None or len(got) < count:
            assert time.monotonic() < deadline, f"read {len(got)} of {count} within {timeout}s"
            left = 100 if count is None else min(100, count - len(got))
            batch = consumer.poll(timeout_ms=300, max_records=left)
            for tp, records in batch.items():
                got += [(tp.partition, r.offset, r.value) for r in records]
            if count is None and len(got) + len(first) >= len(produced):
                break
        return got

    first: list = []
    c1 = member()
    try:
        first = read(c1, 400, 60)
    finally:
        c1.close()  # autocommit=True: commits the offsets of what it returned
    upto = {p: 0 for p in range(partitions)}
    for p, o, v in first:
        assert o == upto[p], f"partition {p}: read offset {o} after {upto[p] - 1}"
        assert produced[(p, o)] == v
        upto[p] = o + 1
    committed = committed_offsets(cluster.bootstrap, group, topic, partitions)
    print(f"read {len(first)}, next offsets {upto}, committed {committed}")
    for p, n in upto.items():
        if n:
            assert committed[p] == n, f"partition {p}: committed {committed[p]}, read up to {n}"
        else:  # a partition read from offset 0 but not returned yet
            assert committed[p] in (0, -1001), f"partition {p}: committed {committed[p]}"

    c2 = member()
    try:
        second = read(c2, None, 60)
    finally:
        c2.close()
    starts = {}
    for p, o, v in second:
        starts.setdefault(p, o)
        assert produced[(p, o)] == v
    assert starts == {p: upto[p] for p in starts}, (
        f"the restarted member began at {starts}; the committed offsets were {upto}"
    )
    everything = sorted((p, o) for p, o, _ in first + second)
    assert everything == sorted(produced), (
        f"{len(everything)} read in all ({len(set(everything))} distinct), {len(produced)} produced"
    )
    assert committed_offsets(cluster.bootstrap, group, topic, partitions) == high_watermarks(
        cluster.bootstrap, topic, range(partitions)
    )


def test_kcat_balanced_consumer(kafka_cluster):
    """kcat -G (librdkafka's KafkaConsumer, auto-commit): reads every
    message of a 4-partition topic once, exits at the end (-e), and its
    close commits the log end of every partition."""
    cluster = start(kafka_cluster)
    topic, group, partitions = "kcat-group", "kcat-group-g", 4
    delivered = topic_with_messages(cluster, topic, partitions, 2000, b"kcat")
    produced = sorted((r.partition, r.offset, r.value.decode()) for r in delivered)
    command = [
        KCAT, "-b", cluster.bootstrap, "-G", group, "-e", "-q", "-f", r"%p\t%o\t%s\n",
        "-X", "auto.offset.reset=earliest", "-X", f"session.timeout.ms={MEMBER_SESSION_MS}",
        topic,
    ]
    try:
        result = subprocess.run(command, capture_output=True, timeout=90, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{command} still running after 90s; stderr:\n{(e.stderr or b'').decode()[-3000:]}")
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"kcat exited {result.returncode}:\n{stderr[-3000:]}"
    assert "ERROR" not in stderr, stderr[-3000:]
    got = []
    for line in result.stdout.decode().splitlines():
        p, o, v = line.split("\t")
        got.append((int(p), int(o), v))
    assert sorted(got) == produced, (
        f"kcat read {len(got)} ({len(set(got))} distinct) of {len(produced)}; stderr:\n{stderr[-2000:]}"
    )
    committed = committed_offsets(cluster.bootstrap, group, topic, partitions)
    marks = high_watermarks(cluster.bootstrap, topic, range(partitions))
    assert committed == marks, f"committed {committed}, log ends {marks}; kcat stderr:\n{stderr[-2000:]}"
    # The group is empty again once kcat has left.
    assert describe_group(cluster.bootstrap, group).state == ConsumerGroupState.EMPTY


def test_committed_offsets_survive_kill_9_of_the_coordinator(kafka_cluster):
    """A member commits (synchronously) part way through a 4-partition
    topic and leaves. The group's coordinator, the leader of its
    __consumer_offsets partition, is killed with kill -9. Another broker
    leads that partition, rebuilds the group from it, and answers
    list_consumer_group_offsets with the same offsets; a new member of
    the group resumes exactly at them."""
    cluster = start(kafka_cluster)
    topic, group, partitions = "failover-offsets", "failover-offsets-g", 4
    delivered = topic_with_messages(cluster, topic, partitions, 1200, b"fo")
    produced = {(r.partition, r.offset): r.value for r in delivered}

    # The first member: reads some of each partition, commits exactly what
    # it read, leaves.
    c1 = group_consumer(cluster.bootstrap, group, **{"enable.auto.commit": False})
    upto: dict[int, int] = {}
    try:
        c1.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(upto) < partitions or min(upto.values()) < 50:
            assert time.monotonic() < deadline, f"first member read only {upto}"
            for msg in c1.consume(100, 0.5):
                assert msg.error() is None, msg.error()
                if upto.get(msg.partition(), 0) < 100 + 20 * msg.partition():
                    assert msg.offset() == upto.get(msg.partition(), 0)
                    upto[msg.partition()] = msg.offset() + 1
        result = c1.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in upto.items()], asynchronous=False
        )
        assert all(tp.error is None for tp in result), result
    finally:
        c1.close()
    assert committed_offsets(cluster.bootstrap, group, topic, partitions) == upto

    description = describe_group(cluster.bootstrap, group)
    coordinator = description.coordinator.id
    offsets_part = offsets_partition(group)
    states = wait_for_partitions(cluster, "__consumer_offsets", fully_replicated, 30, "offsets in sync")
    assert states[offsets_part].leader == coordinator, (
        f"coordinator {coordinator}, but __consumer_offsets-{offsets_part} is led by "
        f"{states[offsets_part].leader}"
    )
    print(f"group {group}: coordinator {coordinator} (__consumer_offsets-{offsets_part}), committed {upto}")
    cluster.broker(coordinator).kill()
    new_states = wait_for_partitions(
        cluster,
        "__consumer_offsets",
        lambda s: s[offsets_part].leader not in (-1, coordinator),
        ELECTION,
        f"__consumer_offsets-{offsets_part} led by a broker other than {coordinator}",
    )
    new_coordinator = new_states[offsets_part].leader
    bootstrap = ",".join(b.address for b in cluster.reachable)

    def described():
        try:
            d = describe_group(bootstrap, group)
        except KafkaException:  # COORDINATOR_LOAD_IN_PROGRESS and the like
            return None
        return d if d.coordinator.id == new_coordinator else None

    d = wait_for(described, 30, f"the group described by its new coordinator {new_coordinator}")
    assert d.state == ConsumerGroupState.EMPTY, d.state
    assert committed_offsets(bootstrap, group, topic, partitions) == upto

    # A new member resumes at the committed offsets.
    c2 = group_consumer(bootstrap, group, **{"enable.auto.commit": False})
    got: dict[int, list[int]] = {p: [] for p in range(partitions)}
    try:
        c2.subscribe([topic])
        deadline = time.monotonic() + 60
        want = {p: sum(1 for q, _ in produced if q == p) - upto[p] for p in range(partitions)}
        while any(len(got[p]) < want[p] for p in range(partitions)):
            counts = {p: len(o) for p, o in got.items()}
            assert time.monotonic() < deadline, f"second member read {counts} of {want}"
            for msg in c2.consume(100, 0.5):
                assert msg.error() is None, msg.error()
                assert produced[(msg.partition(), msg.offset())] == msg.value()
                got[msg.partition()].append(msg.offset())
    finally:
        c2.close()
    for p in range(partitions):
        expected = [o for q, o in sorted(produced) if q == p and o >= upto[p]]
        assert got[p] == expected, (
            f"partition {p}: the new member read offsets {got[p][:3]}..{got[p][-3:]} "
            f"({len(got[p])}); committed was {upto[p]}"
        )


def test_admin_list_describe_delete_groups(kafka_cluster):
    """AdminClient: list_consumer_groups shows an active group (Stable)
    and an empty one (Empty); describe_consumer_groups shows members,
    their assignments and the coordinator; delete_consumer_groups refuses
    the active group (NON_EMPTY_GROUP), deletes the empty one, whose
    committed offsets are then gone, and answers GROUP_ID_NOT_FOUND for a
    group that does not exist."""
    cluster = start(kafka_cluster)
    topic, partitions = "admin-groups", 4
    active, empty = "admin-active", "admin-empty"
    create_replicated_topic(cluster, topic, partitions, 3, min_insync_replicas=2)
    offsets_topic_ready(cluster)
    produce(cluster.bootstrap, topic, [(None, b"a-%d" % i, None, i % partitions) for i in range(40)])

    # The empty group: commits offsets, then its only member leaves.
    c = group_consumer(cluster.bootstrap, empty, **{"enable.auto.commit": False})
    c.subscribe([topic])
    offsets = {p: 3 + p for p in range(partitions)}
    try:
        wait_for(lambda: c.poll(0.2) is not None or c.assignment(), 30, f"{empty}: assigned")
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        c.close()
    assert committed_offsets(cluster.bootstrap, empty, topic, partitions) == offsets

    readers = [GroupReader(cluster.bootstrap, active, topic, f"{active}-{i}") for i in range(2)]
    admin = admin_client(cluster.bootstrap)
    try:
        owned = wait_owned(readers, partitions, 40, f"{active}: both members owning partitions")

        def listed():
            result = admin.list_consumer_groups().result(timeout=WAIT)
            assert not result.errors, result.errors
            states = {g.group_id: g for g in result.valid}
            ok = (
                active in states
                and empty in states
                and states[active].state == ConsumerGroupState.STABLE
            )
            return states if ok else None

        groups = wait_for(listed, 20, f"{active} listed as Stable and {empty} listed")
        assert groups[empty].state == ConsumerGroupState.EMPTY, groups[empty].state
        assert not groups[active].is_simple_consumer_group

        descriptions = admin_results(admin.describe_consumer_groups([active, empty]))
        a, e = descriptions[active], descriptions[empty]
        assert not isinstance(a, Exception) and not isinstance(e, Exception), descriptions
        assert a.state == ConsumerGroupState.STABLE
        assert a.partition_assignor in ("range", "roundrobin"), a.partition_assignor
        assert a.coordinator.id in {b.broker_id for b in cluster.brokers}
        members = {m.client_id: m for m in a.members}
        assert sorted(members) == sorted(r.name for r in readers), members
        for r in readers:
            m = members[r.name]
            assigned = sorted(tp.partition for tp in m.assignment.topic_partitions)
            assert assigned == owned[r.name], f"{r.name}: described {assigned}, owns {owned[r.name]}"
            assert {tp.topic for tp in m.assignment.topic_partitions} == {topic}
            assert m.member_id and m.host
        assert e.state == ConsumerGroupState.EMPTY and not e.members, e

        deleted = admin_results(admin.delete_consumer_groups([active, empty, "admin-never-was"]))
        assert isinstance(deleted[active], KafkaException), deleted
        assert deleted[active].args[0].code() == KafkaError.NON_EMPTY_GROUP, deleted[active]
        assert deleted[empty] is None, deleted[empty]
        assert isinstance(deleted["admin-never-was"], KafkaException), deleted
        assert deleted["admin-never-was"].args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, deleted

        # The deleted group's offsets are gone; the active group is untouched.
        assert committed_offsets(cluster.bootstrap, empty, topic, partitions) == {
            p: -1001 for p in range(partitions)
        }
        result = admin.list_consumer_groups().result(timeout=WAIT)
        names = {g.group_id for g in result.valid}
        assert empty not in names and active in names, names
        assert describe_group(cluster.bootstrap, active).state == ConsumerGroupState.STABLE
    finally:
        for r in readers:
            r.close()
