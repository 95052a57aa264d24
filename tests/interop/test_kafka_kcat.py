"""kcat (librdkafka 2.0.2, Debian's build) against fjord-broker.

kcat is the Kafka operator's netcat: it produces lines from stdin and prints
what it consumes with a format string. Each test produces with kcat, consumes
with kcat, and compares what came back with what went in, field by field:
partition, offset, key, value (a NULL one told apart from an empty one by
its length, -1), headers and timestamps.

librdkafka picks features by the broker's API versions: record batches
(headers, NULLs) need Produce v3+ and Fetch v4+; zstd needs Produce v7+ and
Fetch v10+; in 2.0.2, gzip, snappy and lz4 need Produce v0 in the advertised
range, and lz4 also FindCoordinator v0. Otherwise it silently falls back
(to no compression, say), which these tests catch by looking at what the
broker stored.

FJORD_KCAT overrides which kcat runs (default: `kcat` on PATH).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from kafka_helpers import KCAT, WAIT, stored_bytes

# Fields separated by tabs (never in our data): partition, offset, key length
# (-1 = NULL), key, value length (-1 = NULL), value, timestamp, headers.
FORMAT = r"%p\t%o\t%K\t%k\t%S\t%s\t%T\t%h\n"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    key: str | None
    value: str | None
    timestamp: int
    headers: str  # kcat's rendering: n=v,n=v (NULL values as n=NULL)


def kcat(*args: str, input: bytes | None = None, timeout: float = WAIT) -> str:
    """Run kcat to completion; it must exit 0. Returns its stdout."""
    command = [KCAT, *args]
    try:
        result = subprocess.run(
            command, input=input, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"{command} still running after {timeout}s; stderr:\n"
            f"{(e.stderr or b'').decode(errors='replace')[-3000:]}"
        )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"{command} exited {result.returncode}; stderr:\n{stderr[-3000:]}"
    # kcat reports delivery and fetch errors on stderr; some of them with exit 0.
    assert "ERROR" not in stderr, f"{command} reported errors:\n{stderr[-3000:]}"
    return result.stdout.decode()


def produce(cluster, topic: str, lines: list[str], *args: str) -> None:
    """One kcat producer run: one message per line (`key:value` with -K:).

    Idempotent: librdkafka keeps a producer's order across retries only
    then, and these tests compare offsets exactly."""
    data = "".join(f"{line}\n" for line in lines).encode()
    kcat(
        "-P", "-b", cluster.bootstrap, "-t", topic, "-X", "enable.idempotence=true", *args,
        input=data,
    )


def parse(output: str) -> list[Message]:
    messages = []
    for line in output.splitlines():
        fields = line.split("\t")
        assert len(fields) == 8, f"unparsable kcat line {line!r}"
        p, o, klen, key, vlen, value, ts, headers = fields
        klen, vlen = int(klen), int(vlen)
        if klen == -1:
            assert key == "", line
        else:
            assert len(key.encode()) == klen, f"key length {klen} != {key!r}"
        if vlen == -1:
            assert value == "", line
        else:
            assert len(value.encode()) == vlen, f"value length {vlen} != {value!r}"
        messages.append(
            Message(
                int(p),
                int(o),
                None if klen == -1 else key,
                None if vlen == -1 else value,
                int(ts),
                headers,
            )
        )
    return messages


def consume(cluster, topic: str, *args: str) -> list[Message]:
    """Consume partition 0 (or as `args` say) until its end, then exit (-e)."""
    return parse(kcat("-C", "-b", cluster.bootstrap, "-t", topic, "-e", "-q", "-f", FORMAT, *args))


def kv(messages: list[Message]) -> list[tuple[int, str | None, str | None]]:
    return [(m.offset, m.key, m.value) for m in messages]


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_round_trip(kafka_cluster, codec):
    """Keys, values of many sizes and headers through each codec; the
    broker must store the compressed batches as sent and serve them back."""
    cluster = kafka_cluster()
    topic = f"kcat-{codec}"
    # Very compressible values, some large enough to span several batches'
    # worth of bytes, plus non-ASCII text.
    expected = []
    for i in range(300):
        key = f"key-{i}"
        value = f"value {i} fjørd " + "abcdefgh" * (i * 7 % 500)
        expected.append((i, key, value))
    produce(
        cluster,
        topic,
        [f"{k}:{v}" for _, k, v in expected],
        "-p", "0", "-K", ":", "-z", codec, "-H", "h1=one", "-H", "h2=ø 2",
    )
    got = consume(cluster, topic, "-p", "0", "-o", "beginning")
    assert kv(got) == expected
    assert {m.partition for m in got} == {0}
    assert all(m.headers == "h1=one,h2=ø 2" for m in got), {m.headers for m in got}

    raw = sum(len(k.encode()) + len(v.encode()) for _, k, v in expected)
    stored = stored_bytes(cluster, topic)
    assert stored > 0, "no segment files found for the topic"
    if codec == "none":
        assert stored > raw
    else:
        # Stored as sent, i.e. still compressed.
        assert stored < raw / 4, f"{codec}: {stored} bytes stored for {raw} bytes of payload"


def test_null_keys_and_values(kafka_cluster):
    """With -Z an empty key or value is sent as NULL; without it, as empty.
    The broker must keep the two apart."""
    cluster = kafka_cluster()
    lines = ["k1:v1", ":v2", "k3:", ":"]
    produce(cluster, "kcat-nulls", lines, "-K", ":", "-Z")
    produce(cluster, "kcat-empties", lines, "-K", ":")
    assert kv(consume(cluster, "kcat-nulls")) == [
        (0, "k1", "v1"),
        (1, None, "v2"),
        (2, "k3", None),
        (3, None, None),
    ]
    assert kv(consume(cluster, "kcat-empties")) == [
        (0, "k1", "v1"),
        (1, "", "v2"),
        (2, "k3", ""),
        (3, "", ""),
    ]


def test_headers(kafka_cluster):
    """Repeated header names, empty and NULL header values, spaces and
    non-ASCII, in order; and messages without headers."""
    cluster = kafka_cluster()
    topic = "kcat-headers"
    produce(
        cluster, topic, ["a:1", "b:2"], "-K", ":",
        "-H", "dup=first", "-H", "dup=second", "-H", "empty=", "-H", "null",
        "-H", "text=x y ø",
    )
    produce(cluster, topic, ["c:3"], "-K", ":")
    got = consume(cluster, topic)
    assert kv(got) == [(0, "a", "1"), (1, "b", "2"), (2, "c", "3")]
    assert [m.headers for m in got] == ["dup=first,dup=second,empty=,null=NULL,text=x y ø"] * 2 + [""]


def test_offsets(kafka_cluster):
    """-o beginning, an absolute offset, -N from the end, s@timestamp, and
    end (both with -e, which must return nothing, and live)."""
    cluster = kafka_cluster()
    topic = "kcat-offsets"
    first = [f"a{i}:first {i}" for i in range(10)]
    second = [f"b{i}:second {i}" for i in range(10)]
    produce(cluster, topic, first, "-K", ":")
    time.sleep(0.05)  # every timestamp of the second run is later
    produce(cluster, topic, second, "-K", ":")
    everything = [(i, *line.split(":", 1)) for i, line in enumerate(first + second)]

    all_messages = consume(cluster, topic, "-o", "beginning")
    assert kv(all_messages) == everything
    assert kv(consume(cluster, topic)) == everything  # kcat's default is beginning
    assert kv(consume(cluster, topic, "-o", "7")) == everything[7:]
    assert kv(consume(cluster, topic, "-o", "-5")) == everything[15:]
    assert kv(consume(cluster, topic, "-o", "-20")) == everything
    assert kv(consume(cluster, topic, "-o", "end")) == []

    # Timestamps are the producer's (CreateTime), in produce order.
    stamps = [m.timestamp for m in all_messages]
    assert stamps == sorted(stamps)
    start_of_second = stamps[10]
    assert max(stamps[:10]) < start_of_second
    assert kv(consume(cluster, topic, "-o", f"s@{start_of_second}")) == everything[10:]
    assert kv(consume(cluster, topic, "-o", f"s@{max(stamps[:10]) + 1}")) == everything[10:]
    assert kv(consume(cluster, topic, "-o", f"s@{stamps[0]}")) == everything
    assert kv(consume(cluster, topic, "-o", f"s@{stamps[0] - 60_000}")) == everything
    # A timestamp after every message: nothing (ListOffsets answers offset -1,
    # which librdkafka turns into the end).
    assert kv(consume(cluster, topic, "-o", f"s@{stamps[-1] + 60_000}")) == []

    # Live from the end: start the consumer, wait until it fetches at the end
    # offset, then produce; it must get exactly the new messages.
    with open(cluster.workdir / "kcat-end.err", "wb") as err:
        consumer = subprocess.Popen(
            [KCAT, "-C", "-b", cluster.bootstrap, "-t", topic, "-o", "end", "-c", "3",
             "-q", "-d", "fetch", "-f", FORMAT],
            stdout=subprocess.PIPE, stderr=err,
        )
    try:
        fetching = re.compile(rf"Fetch topic {topic} \[0\] at offset 20\b")
        deadline = time.monotonic() + WAIT
        while not fetching.search((cluster.workdir / "kcat-end.err").read_text(errors="replace")):
            assert consumer.poll() is None, "kcat -o end exited early"
            assert time.monotonic() < deadline, "kcat -o end never fetched at offset 20"
            time.sleep(0.05)
        produce(cluster, topic, ["c0:third 0", "c1:third 1", "c2:third 2"], "-K", ":")
        out, _ = consumer.communicate(timeout=WAIT)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(WAIT)
    assert consumer.returncode == 0
    assert kv(parse(out.decode())) == [(20, "c0", "third 0"), (21, "c1", "third 1"), (22, "c2", "third 2")]


def test_partitions_and_metadata(kafka_cluster):
    """Produce to explicit partitions of an auto-created 4-partition topic;
    -L shows the partitions; each partition reads back on its own and all
    together."""
    cluster = kafka_cluster(num_partitions=4)
    topic = "kcat-partitions"
    for p in range(4):
        produce(cluster, topic, [f"p{p}-{i}:v{p}-{i}" for i in range(5 + p)], "-K", ":", "-p", str(p))
    listing = kcat("-L", "-b", cluster.bootstrap, "-t", topic)
    assert f'topic "{topic}" with 4 partitions' in listing, listing
    for p in range(4):
        got = consume(cluster, topic, "-p", str(p))
        assert [(m.partition, m.offset, m.key, m.value) for m in got] == [
            (p, i, f"p{p}-{i}", f"v{p}-{i}") for i in range(5 + p)
        ]
    together = consume(cluster, topic)  # no -p: every partition, -e after all
    assert sorted((m.partition, m.offset, m.key, m.value) for m in together) == [
        (p, i, f"p{p}-{i}", f"v{p}-{i}") for p in range(4) for i in range(5 + p)
    ]



def test_new_topic_takes_the_first_produce(kafka_cluster):
    """Once Metadata names a leader for a freshly auto-created topic, that
    leader must accept the first Produce. (A NOT_LEADER_OR_FOLLOWER there
    makes librdkafka retry, and a retried batch of a non-idempotent producer
    lands behind later ones: out of order.) The window is short, so try
    many new topics, with every CPU kept busy (as on a loaded CI machine)
    to widen it."""
    cluster = kafka_cluster()
    failures = []
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        for i in range(40):
            produce_first(cluster, f"kcat-fresh-{i}", failures)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(WAIT)
    assert not failures, f"{len(failures)} of 40 first produces refused: {failures[:3]}"


def produce_first(cluster, topic: str, failures: list) -> None:
    """Produce one message to a new topic; note librdkafka's errors."""
    result = subprocess.run(
        [KCAT, "-P", "-b", cluster.bootstrap, "-t", topic, "-p", "0", "-d", "msg"],
        input=b"first\n", capture_output=True, timeout=WAIT, check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    errors = [
        line for line in result.stderr.decode(errors="replace").splitlines()
        if "encountered error" in line
    ]
    if errors:
        failures.append((topic, errors))
