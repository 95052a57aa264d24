"""TLS, SASL and ACLs on the brokers, with real clients.

kcat (Debian's librdkafka 2.0.2, which repeats its SCRAM client nonce),
confluent-kafka and kafka-python log in over SASL_SSL with SCRAM-SHA-256,
SCRAM-SHA-512 and PLAIN; bad logins and bad TLS are refused cleanly while
the brokers keep serving everyone else; Kafka ACLs decide who may read and
write, across brokers and across a restart of the whole cluster; replicas
fetch from each other over the SASL_SSL listener. Every run uses fresh
random user names and passwords.
"""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka import errors as kafka_python_errors
from kazoo.client import KazooClient

from conftest import FJORD_BIN_DIR, TICK_MS
from kafka_helpers import RDKAFKA_LOG, WAIT, _read_frame, consume, produce, wait_for
from security_helpers import make_pki, random_user, rdkafka_config, write_user

LISTENERS = {"PLAIN": "PLAINTEXT", "SECURE": "SASL_SSL"}
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


class Secure:
    """A secured cluster: PKI, users and the client settings for them."""

    def __init__(self, cluster, pki, admin, broker_user):
        self.cluster = cluster
        self.pki = pki
        self.admin = admin  # (user, password), a super user
        self.broker_user = broker_user

    def secure(self, broker=None) -> str:
        """The SASL_SSL bootstrap (one broker, or all)."""
        brokers = [broker] if broker else self.cluster.reachable
        return ",".join(b.listener_address("SECURE") for b in brokers)

    def config(self, user, password, mechanism="SCRAM-SHA-256") -> dict:
        return rdkafka_config("SASL_SSL", self.pki.ca, user, password, mechanism)

    def admin_config(self) -> dict:
        return self.config(*self.admin, "SCRAM-SHA-512")

    def properties(self, name, user, password, mechanism="SCRAM-SHA-256") -> Path:
        """A client property file (for kcat -F and fjord --command-config)."""
        path = self.pki.dir / f"{name}.properties"
        lines = [f"{k}={v}" for k, v in self.config(user, password, mechanism).items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def fjord(self, *args, user=None, broker=None, check=True) -> subprocess.CompletedProcess:
        """The fjord CLI over SASL_SSL, as the admin unless `user` is given."""
        user = user or self.admin
        props = self.properties(f"cli-{user[0]}", *user)
        out = subprocess.run(
            [str(FJORD_BIN_DIR / "fjord"), "--bootstrap", self.secure(broker), *args,
             "--command-config", str(props)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        if check:
            assert out.returncode == 0, f"fjord {' '.join(args)}: {out.stderr}"
        return out

    def add_user(self, user, password):
        """Through the Kafka API (AlterUserScramCredentials), as the admin."""
        out = subprocess.run(
            [str(FJORD_BIN_DIR / "fjord"), "--bootstrap", self.secure(), "users", "set-scram", user,
             "--command-config", str(self.properties("cli-admin", *self.admin))],
            input=password + "\n", capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr


def start_secure(kafka_cluster, tmp_path, brokers=3, **options) -> Secure:
    pki = make_pki(tmp_path / "pki")
    cert, key = pki.issue("broker", "/CN=localhost")
    admin, broker_user = random_user(), random_user()
    inter = tmp_path / "pki" / "inter-broker.properties"
    inter.write_text(
        "\n".join(f"{k}={v}" for k, v in rdkafka_config(
            "SASL_SSL", pki.ca, broker_user[0], broker_user[1], "SCRAM-SHA-512").items()) + "\n"
    )
    cluster = kafka_cluster(
        brokers=brokers,
        listeners=LISTENERS,
        inter_broker_listener="SECURE",
        inter_broker_client_config=inter,
        ssl_certificate=cert,
        ssl_key=key,
        ssl_ca=pki.ca,
        authorizer="acl",
        super_users=f"User:{admin[0]};User:{broker_user[0]}",
        **options,
    )
    # Kafka's own format, written the way kafka-configs --zookeeper wrote it: the
    # brokers must pick it up from the coordinator.
    zk = KazooClient(hosts=cluster.coordinator.address)
    zk.start(timeout=WAIT)
    try:
        write_user(zk, *admin)
        write_user(zk, *broker_user)
    finally:
        zk.stop()
        zk.close()
    secure = Secure(cluster, pki, admin, broker_user)
    # Every broker serves the admin once its credentials arrived.
    for b in cluster.brokers:
        wait_for(lambda b=b: secure.fjord("topics", "list", broker=b, check=False).returncode == 0,
                 30, f"the admin can log in to broker {b.broker_id}")
    return secure


def kcat(*args, config: dict, input: bytes | None = None, timeout: float = WAIT, check=True):
    flags = []
    for k, v in config.items():
        flags += ["-X", f"{k}={v}"]
    out = subprocess.run(["kcat", *flags, *args], input=input, capture_output=True, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out


def kafka_python_config(s: Secure, user, password, mechanism) -> dict:
    return {
        "bootstrap_servers": s.secure().split(","),
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "ssl_cafile": str(s.pki.ca),
        "request_timeout_ms": 30000,
    }


def test_sasl_ssl_clients_and_acls(kafka_cluster, tmp_path):
    s = start_secure(kafka_cluster, tmp_path)
    topic = "secure-orders"
    s.fjord("topics", "create", topic, "--partitions", "2", "--replication-factor", "3",
            "--config", "min.insync.replicas=2")

    # --- every client, every mechanism: produce, then read it all back (admin).
    admin_user, admin_pw = s.admin
    expected = []
    for mech in MECHANISMS:
        # kcat (librdkafka 2.0.2 repeats its SCRAM nonce: accepted).
        line = f"kcat {mech}".encode()
        kcat("-b", s.secure(), "-P", "-t", topic, "-p", "0", config=s.config(admin_user, admin_pw, mech),
             input=line + b"\n")
        expected.append(line)
        # confluent-kafka
        value = f"confluent {mech}".encode()
        delivered, failed = produce(s.secure(), topic, [(None, value, None, 0)],
                                    **{**s.config(admin_user, admin_pw, mech), "acks": "all"})
        assert not failed and len(delivered) == 1, failed
        expected.append(value)
        # kafka-python
        value = f"kafka-python {mech}".encode()
        p = KafkaProducer(acks="all", **kafka_python_config(s, admin_user, admin_pw, mech))
        p.send(topic, value=value, partition=0).get(timeout=WAIT)
        p.close()
        expected.append(value)
    for mech in MECHANISMS:
        got = kcat("-b", s.secure(), "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
                   "-f", "%s\n", config=s.config(admin_user, admin_pw, mech)).stdout.splitlines()
        assert got == expected, f"kcat {mech}"
        records = consume(s.secure(), topic, [0], **s.config(admin_user, admin_pw, mech))
        assert [r.value for r in records] == expected, f"confluent-kafka {mech}"
        c = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=5000,
                          **kafka_python_config(s, admin_user, admin_pw, mech))
        c.assign([KafkaTopicPartition(topic, 0)])
        c.seek_to_beginning()
        values = [m.value for m in c]
        c.close()
        assert values == expected, f"kafka-python {mech}"

    # --- replication ran over the SASL_SSL listener (the only one between brokers):
    # every replica of every partition is in sync.
    wait_for(lambda: all(len(isr) == 3 for isr in isrs(s, topic).values()), 30,
             "every partition fully in sync")

    # --- a user without ACLs: no topic, no group.
    alice, alice_pw = random_user()
    s.add_user(alice, alice_pw)
    alice_cfg = s.config(alice, alice_pw, "SCRAM-SHA-512")
    wait_for(lambda: kcat("-b", s.secure(), "-L", config=alice_cfg, check=False).returncode == 0,
             10, "alice can log in")
    _, failed = produce(s.secure(), topic, [(None, b"nope", None, 0)], timeout=20, **alice_cfg)
    assert failed and failed[0][1].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, failed
    listed = kcat("-b", s.secure(), "-L", "-J", config=alice_cfg).stdout.decode()
    assert topic not in listed, "a topic alice may not describe is listed"
    err = group_consume_error(s, alice_cfg, topic, "alice-app")
    assert err is not None and err.code() in (KafkaError.GROUP_AUTHORIZATION_FAILED,
                                              KafkaError.TOPIC_AUTHORIZATION_FAILED), err

    # --- READ on the topic and a PREFIXED READ on groups: alice consumes; the ACLs
    # were created through broker 1 and must be in force on broker 3 too.
    b1, b3 = s.cluster.brokers[0], s.cluster.brokers[2]
    s.fjord("acls", "create", "--allow", f"User:{alice}", "--operation", "Read", "--topic", topic, broker=b1)
    s.fjord("acls", "create", "--allow", f"User:{alice}", "--operation", "Read", "--group", "alice-",
            "--prefixed", broker=b1)
    began = time.monotonic()
    wait_for(lambda: f"User:{alice}" in s.fjord("acls", "list", "--topic", topic, broker=b3).stdout,
             5, "broker 3 lists the new ACL")
    assert time.monotonic() - began < 2.0, "the ACL took more than 2 s to reach broker 3"
    records = group_consume(s, alice_cfg, topic, "alice-app", len(expected))
    assert sorted(records) == sorted(expected)

    # --- DENY beats ALLOW.
    s.fjord("acls", "create", "--deny", f"User:{alice}", "--operation", "Read", "--topic", topic)
    wait_read_error(s, alice_cfg, topic, KafkaError.TOPIC_AUTHORIZATION_FAILED, "the DENY is in force")

    # --- PREFIXED topic ACL for another user; a super user bypasses everything.
    bob, bob_pw = random_user()
    s.add_user(bob, bob_pw)
    bob_cfg = s.config(bob, bob_pw, "PLAIN")
    s.fjord("acls", "create", "--allow", f"User:{bob}", "--operation", "Write", "--operation", "Create",
            "--topic", "bob-", "--prefixed")
    wait_for(lambda: kcat("-b", s.secure(), "-L", config=bob_cfg, check=False).returncode == 0,
             10, "bob can log in")
    delivered, failed = produce(s.secure(), "bob-events", [(None, b"from bob")], timeout=30, **bob_cfg)
    assert not failed and len(delivered) == 1, failed
    _, failed = produce(s.secure(), "other-events", [(None, b"from bob")], timeout=20, **bob_cfg)
    assert failed and failed[0][1].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, failed
    assert read_error(s, s.admin_config(), topic) is None, "the super user is denied"

    # --- the whole cluster restarts (brokers and coordinator, kill -9): users and ACLs
    # are still in force.
    for b in s.cluster.brokers:
        b.kill()
    restart_coordinator(s.cluster.coordinator)
    for b in s.cluster.brokers:
        b.restart()
    s.cluster.wait_for_brokers()
    wait_read_error(s, alice_cfg, topic, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                    "alice still denied after the restart")
    delivered, failed = produce(s.secure(), "bob-events", [(None, b"again")], timeout=30, **bob_cfg)
    assert not failed, failed
    # Deleting the ALLOW leaves the DENY (and the group ACL).
    deleted = s.fjord("acls", "delete", "--topic", topic, "--principal", f"User:{alice}",
                      "--operation", "Read", "--permission", "allow").stdout
    assert deleted.startswith("deleted 1 ACL(s)"), deleted
    listed = s.fjord("acls", "list", "--principal", f"User:{alice}").stdout.splitlines()[1:]
    rows = sorted(tuple(line.split()[:2] + line.split()[-2:]) for line in listed)
    assert rows == sorted([("Group", "alice-", "Read", "ALLOW"), ("Topic", topic, "Read", "DENY")]), rows


def restart_coordinator(server) -> None:
    """kill -9 of a fjord-coordinator, then the same binary on the same port and data."""
    assert server.kind == "fjord"
    server.process.kill()
    server.process.wait(10)
    with open(server.workdir / "stdout-restart.txt", "wb") as out, open(server.log_path, "ab") as log:
        server.process = subprocess.Popen(
            [str(FJORD_BIN_DIR / "fjord-coordinator"), "--listen", server.address,
             "--data-dir", str(server.workdir / "data"), "--tick-ms", str(TICK_MS)],
            cwd=server.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=log,
        )
    wait_for(lambda: "listening on" in (server.workdir / "stdout-restart.txt").read_text(), 30,
             "the coordinator listens again")


def isrs(s: Secure, topic: str) -> dict[int, list[int]]:
    """Each partition's ISR, from Metadata over SASL_SSL as the admin."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": s.secure(), **RDKAFKA_LOG, **s.admin_config()})
    md = admin.list_topics(topic, timeout=WAIT)
    return {p: list(part.isrs) for p, part in md.topics[topic].partitions.items()}


def read_error(s: Secure, config: dict, topic: str):
    """The broker's error code for an assign()-only read of partition 0, or None
    if it reads (to its end). librdkafka's local, transient errors (a connection
    being set up or lost) are not answers: the read goes on (15 s at most)."""
    c = Consumer({"bootstrap.servers": s.secure(), "group.id": "unused", "enable.auto.commit": False,
                  "enable.partition.eof": True, **RDKAFKA_LOG, **config})
    from confluent_kafka import TopicPartition
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 15
        transient = []
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is None or err.code() == KafkaError._PARTITION_EOF:
                return None
            if err.code() < 0:
                transient.append(err.name())
                continue
            return err.code()
        return f"timeout (local errors: {transient})"
    finally:
        c.close()


def wait_read_error(s: Secure, config: dict, topic: str, code, what: str, timeout: float = 30) -> None:
    """Until an assign()-only read of partition 0 answers `code`; fails with what it
    saw last."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = read_error(s, config, topic)
        seen.append(got)
        if got == code:
            return
        time.sleep(0.2)
    raise AssertionError(f"not {what} within {timeout}s; reads answered {seen[-5:]}")


def group_consume(s: Secure, config: dict, topic: str, group: str, count: int) -> list[bytes]:
    c = Consumer({"bootstrap.servers": s.secure(), "group.id": group, "auto.offset.reset": "earliest",
                  **RDKAFKA_LOG, **config})
    got = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 40
        while len(got) < count and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg.value())
        c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def group_consume_error(s: Secure, config: dict, topic: str, group: str):
    """The first error a group consumer gets (None if it reads a message)."""
    c = Consumer({"bootstrap.servers": s.secure(), "group.id": group, "auto.offset.reset": "earliest",
                  **RDKAFKA_LOG, **config})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            return msg.error()
        return None
    except KafkaException as e:
        return e.args[0]
    finally:
        c.close()


def test_bad_logins_and_bad_tls_are_refused_cleanly(kafka_cluster, tmp_path):
    s = start_secure(kafka_cluster, tmp_path, brokers=1)
    b = s.cluster.brokers[0]
    user, pw = random_user()
    s.add_user(user, pw)
    good = s.config(user, pw, "SCRAM-SHA-256")
    wait_for(lambda: kcat("-b", s.secure(), "-L", config=good, check=False).returncode == 0, 10, "login")

    def refused(config: dict, expect: str):
        out = kcat("-b", s.secure(), "-L", "-m", "5", config=config, check=False)
        assert out.returncode != 0, f"{config} was served"
        assert expect in out.stderr.decode(errors="replace"), out.stderr

    # Wrong password and unknown user: the same answer, never which one it was.
    refused(s.config(user, "wrong", "SCRAM-SHA-256"), "Authentication failed")
    refused(s.config("nobody-" + user, pw, "SCRAM-SHA-512"), "Authentication failed")
    refused(s.config(user, "wrong", "PLAIN"), "Invalid username or password")
    # A plaintext client on the TLS port, and a client that trusts another CA.
    refused({}, "Disconnected")
    other = make_pki(tmp_path / "other-pki", "other-ca")
    refused({**good, "ssl.ca.location": str(other.ca)}, "certificate verify failed")
    # An unsupported mechanism: UNSUPPORTED_SASL_MECHANISM with the enabled list.
    code, mechanisms = sasl_handshake(s.secure(), s.pki.ca, "GSSAPI")
    assert code == 33 and set(mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
    # Anything but ApiVersions/SaslHandshake before authentication: closed, no answer.
    assert metadata_before_login(s.secure(), s.pki.ca) is None
    # A frame over 512 KiB before authentication: closed before it is read.
    with _tls(s.secure().split(",")[0], s.pki.ca) as sock:
        sock.sendall(struct.pack(">i", 600 * 1024) + b"\0" * 1024)
        try:
            assert _response(sock) is None, "a huge pre-login frame was answered"
        except (ConnectionError, ssl.SSLError):
            pass
    # kafka-python's wrong password is a clean error too.
    # (kafka-python logs the SASL failure and reports that it cannot bootstrap, as it
    # does against Apache Kafka.)
    with pytest.raises((kafka_python_errors.KafkaTimeoutError,
                        kafka_python_errors.SaslAuthenticationFailedError)):
        KafkaProducer(**{**kafka_python_config(s, user, "wrong", "SCRAM-SHA-512"),
                         "max_block_ms": 5000}).close()
    # The broker kept serving everyone else, and is alive.
    assert b.running
    assert kcat("-b", s.secure(), "-L", config=good).returncode == 0
    log = b.log_path.read_text()
    assert "SASL authentication failed" in log and "TLS:" in log


def _tls(address: str, ca: Path) -> ssl.SSLSocket:
    host, port = address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection((host, int(port)), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=host)


def _request(api: int, version: int, body: bytes, client_id=b"fjord-test") -> bytes:
    header = struct.pack(">hhih", api, version, 7, len(client_id)) + client_id
    return struct.pack(">i", len(header) + len(body)) + header + body


def _response(sock) -> bytes | None:
    """A response body (after the length), or None at end of stream."""
    frame = _read_frame(sock)
    return None if frame is None else frame[4:]


def sasl_handshake(address: str, ca: Path, mechanism: str):
    """SaslHandshake v1 with `mechanism`: (error code, mechanisms offered)."""
    with _tls(address.split(",")[0], ca) as sock:
        m = mechanism.encode()
        sock.sendall(_request(17, 1, struct.pack(">h", len(m)) + m))
        data = _response(sock)
        assert data is not None, "closed without an answer"
        (code, count) = struct.unpack_from(">hi", data, 4)
        pos, names = 10, []
        for _ in range(count):
            (n,) = struct.unpack_from(">h", data, pos)
            names.append(data[pos + 2:pos + 2 + n].decode())
            pos += 2 + n
        # Then the broker closes the connection.
        assert _response(sock) is None
        return code, names


def metadata_before_login(address: str, ca: Path):
    """A Metadata v1 request on a fresh SASL_SSL connection: the answer, or
    None when the broker closed the connection instead."""
    with _tls(address.split(",")[0], ca) as sock:
        sock.sendall(_request(3, 1, struct.pack(">i", 0)))
        try:
            return _response(sock)
        except (ConnectionError, ssl.SSLError):
            return None


def test_client_certificates(kafka_cluster, tmp_path):
    """An SSL listener that requires client certificates: the certificate's
    subject is the principal ACLs name; no certificate, no connection."""
    pki = make_pki(tmp_path / "pki")
    cert, key = pki.issue("broker", "/CN=localhost")
    ccert, ckey = pki.issue("client", "/CN=carol/O=Fjord Test", server=False)
    cluster = kafka_cluster(
        brokers=1,
        listeners={"PLAIN": "PLAINTEXT", "MTLS": "SSL"},
        inter_broker_listener="PLAIN",
        ssl_certificate=cert,
        ssl_key=key,
        ssl_ca=pki.ca,
        ssl_client_auth="required",
        authorizer="acl",
        super_users="User:ANONYMOUS",  # the PLAINTEXT listener administers this test
    )
    b = cluster.brokers[0]
    mtls = b.listener_address("MTLS")
    plain = f"{b.host}:{b.port}"
    carol = rdkafka_config("SSL", pki.ca, cert=ccert, key=ckey)
    principal = "User:O=Fjord Test,CN=carol"
    kcat("-b", plain, "-P", "-t", "carol-topic", config={}, input=b"for carol\n")
    # Without an ACL the certificate's principal is denied ...
    out = kcat("-b", mtls, "-C", "-t", "carol-topic", "-e", "-m", "10", config=carol, check=False)
    assert b"for carol" not in out.stdout
    # ... and allowed once its subject is granted READ.
    subprocess.run(
        [str(FJORD_BIN_DIR / "fjord"), "--bootstrap", plain, "acls", "create", "--allow", principal,
         "--operation", "Read", "--topic", "carol-topic"], check=True, capture_output=True, timeout=60)
    wait_for(lambda: b"for carol" in kcat("-b", mtls, "-C", "-t", "carol-topic", "-e", "-m", "10",
                                          config=carol, check=False).stdout, 15, "carol reads")
    # No client certificate: the TLS handshake fails.
    out = kcat("-b", mtls, "-L", "-m", "5", config=rdkafka_config("SSL", pki.ca), check=False)
    assert out.returncode != 0
    assert kcat("-b", plain, "-L", config={}).returncode == 0


def test_session_lifetime_and_reauthentication(kafka_cluster, tmp_path):
    """KIP-368: with connections.max.reauth.ms a client that re-authenticates
    (librdkafka 2.2+, in confluent-kafka) keeps its connection; one that
    cannot is disconnected when its session ends."""
    s = start_secure(kafka_cluster, tmp_path, brokers=1, connections_max_reauth_ms=3000)
    user, pw = random_user()
    s.add_user(user, pw)
    s.fjord("acls", "create", "--allow", f"User:{user}", "--operation", "All", "--topic", "reauth")
    cfg = s.config(user, pw, "SCRAM-SHA-512")
    # A raw SaslAuthenticate v1 exchange (PLAIN) is told the lifetime, then cut off.
    with _tls(s.secure(), s.pki.ca) as sock:
        sock.sendall(_request(17, 1, struct.pack(">h", 5) + b"PLAIN"))
        assert struct.unpack_from(">h", _response(sock), 4)[0] == 0
        token = f"\0{user}\0{pw}".encode()
        sock.sendall(_request(36, 1, struct.pack(">i", len(token)) + token))
        data = _response(sock)
        (code,) = struct.unpack_from(">h", data, 4)
        assert code == 0
        # error_message (null string), auth_bytes, then session_lifetime_ms.
        pos = 6
        (n,) = struct.unpack_from(">h", data, pos)
        pos += 2 + max(n, 0)
        (n,) = struct.unpack_from(">i", data, pos)
        pos += 4 + n
        (lifetime,) = struct.unpack_from(">q", data, pos)
        assert lifetime == 3000
        time.sleep(3.5)
        try:
            sock.sendall(_request(18, 0, b""))
            assert _response(sock) is None, "a connection past its session was served"
        except (ConnectionError, ssl.SSLError):
            pass  # already closed: as it should be
    # SaslHandshake v0: the exchange continues in raw SASL frames, no Kafka header.
    with _tls(s.secure(), s.pki.ca) as sock:
        sock.sendall(_request(17, 0, struct.pack(">h", 5) + b"PLAIN"))
        assert struct.unpack_from(">h", _response(sock), 4)[0] == 0
        token = f"\0{user}\0{pw}".encode()
        sock.sendall(struct.pack(">i", len(token)) + token)
        assert _response(sock) == b"", "PLAIN's empty server token"
        sock.sendall(_request(18, 0, b""))
        versions = _response(sock)
        assert versions is not None and struct.unpack_from(">h", versions, 4)[0] == 0
    with _tls(s.secure(), s.pki.ca) as sock:
        sock.sendall(_request(17, 0, struct.pack(">h", 5) + b"PLAIN"))
        _response(sock)
        token = f"\0{user}\0wrong".encode()
        sock.sendall(struct.pack(">i", len(token)) + token)
        try:
            assert _response(sock) is None, "a failed raw login is just a close"
        except (ConnectionError, ssl.SSLError):
            pass
    # confluent-kafka re-authenticates and keeps producing across several lifetimes.
    producer = Producer({"bootstrap.servers": s.secure(), **RDKAFKA_LOG, **cfg})
    errors = []
    for i in range(16):
        producer.produce("reauth", value=b"%d" % i, on_delivery=lambda e, m: e and errors.append(e))
        producer.flush(10)
        time.sleep(0.5)
    assert not errors, errors
    assert "SASL session ended" in s.cluster.brokers[0].log_path.read_text()
