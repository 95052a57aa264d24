"""TLS, client certificates, SASL DIGEST-MD5, superDigest and required
authentication on the coordinator, with kazoo and ZooKeeper's own Java
client (zkCli's ZooKeeperMain), each scenario run against Apache ZooKeeper
3.8 (the reference) and against fjord-coordinator with the same clients and
the same expected outcomes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import AuthFailedError, NoAuthError, SessionClosedRequireSaslError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import make_acl

from conftest import (
    _REPORTS,
    FJORD_BIN_DIR,
    LISTENING_LINE,
    STARTUP_TIMEOUT,
    TICK_MS,
    Server,
    _start_zookeeper,
    _wait_until,
    free_port,
)
from security_helpers import make_pki, random_user

KINDS = ("zookeeper", "fjord")
# Debian's netty-all.jar is an empty shell: the server's and the Java client's Netty
# transport needs these jars named.
NETTY = ":".join(
    f"/usr/share/java/netty-{m}.jar" for m in ("codec", "resolver", "handler", "transport", "buffer", "common")
)
JAVA_CLIENT_CP = f"/usr/share/java/zookeeper.jar:{NETTY}:/usr/share/java/slf4j-simple.jar"
SECURE_LINE = re.compile(r"^secure listening on (\S+):(\d+)$", re.MULTILINE)


def subject(cert: Path) -> str:
    """A certificate's subject in RFC 2253 form (what both servers make the
    x509 id), from openssl."""
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return out.removeprefix("subject=").strip()


def super_digest(user: str, password: str) -> str:
    return f"{user}:" + base64.b64encode(hashlib.sha1(f"{user}:{password}".encode()).digest()).decode()


class Secure:
    """A secured server of either kind: its plain and TLS ports."""

    def __init__(self, server: Server, secure_port: int, pki, users: dict, admin):
        self.server = server
        self.secure = f"127.0.0.1:{secure_port}"
        self.pki = pki
        self.users = users
        self.admin = admin

    def kazoo(self, cert=None, sasl=None, **kw) -> KazooClient:
        options = {"use_ssl": True, "ca": str(self.pki.ca), "verify_certs": True}
        if cert:
            options.update(certfile=str(cert[0]), keyfile=str(cert[1]))
        if sasl:
            options["sasl_options"] = {"mechanism": "DIGEST-MD5", "username": sasl[0], "password": sasl[1]}
        return KazooClient(hosts=self.secure, timeout=10, **options, **kw)


def start(kind: str, workdir: Path, pki, server_cert, users: dict, admin, require_auth=False) -> Secure:
    workdir.mkdir(parents=True)
    (workdir / "data").mkdir()
    log_path = workdir / "server.log"
    jaas = workdir / "server.jaas"
    jaas.write_text(
        "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
        + "\n".join(f'  user_{u}="{p}"' for u, p in users.items()) + ";\n};\n"
    )
    digest = super_digest(*admin)
    if kind == "fjord":
        stdout_path = workdir / "stdout.txt"
        command = [
            str(FJORD_BIN_DIR / "fjord-coordinator"), "--listen", "127.0.0.1:0",
            "--secure-listen", "127.0.0.1:0", "--ssl-certificate", str(server_cert[0]),
            "--ssl-key", str(server_cert[1]), "--ssl-ca", str(pki.ca), "--sasl-users", str(jaas),
            "--super-digest", digest, "--data-dir", str(workdir / "data"), "--tick-ms", str(TICK_MS),
        ]
        if require_auth:
            command.append("--require-auth")
        with open(stdout_path, "wb") as out, open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=log)
        server = Server("fjord", "127.0.0.1", 0, workdir, log_path, process)
        found = {}

        def listening() -> bool:
            text = stdout_path.read_text(errors="replace")
            m, s = LISTENING_LINE.search(text), SECURE_LINE.search(text)
            if m and s:
                server.host, server.port = m.group(1), int(m.group(2))
                found["secure"] = int(s.group(2))
            return bool(m and s)

        try:
            _wait_until(server, listening, "listening")
        except BaseException:
            server.stop()
            raise
        return Secure(server, found["secure"], pki, users, admin)
    secure_port = free_port()
    keystore = pki.keystore("zk-server", *server_cert)
    lines = [
        f"secureClientPort={secure_port}", "secureClientPortAddress=127.0.0.1",
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
        f"ssl.keyStore.location={keystore}", "ssl.keyStore.type=PEM",
        f"ssl.trustStore.location={pki.ca}", "ssl.trustStore.type=PEM", "ssl.clientAuth=need",
        "ssl.clientHostnameVerification=false",
        "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
        "authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider",
    ]
    if require_auth:
        lines += ["enforce.auth.enabled=true", "enforce.auth.schemes=sasl"]
    server = _start_zookeeper(
        workdir,
        extra_config=lines,
        jvm_options=[
            f"-Djava.security.auth.login.config={jaas}",
            f"-Dzookeeper.DigestAuthenticationProvider.superDigest={digest}",
        ],
        classpath=NETTY,
    )
    return Secure(server, secure_port, pki, users, admin)


@pytest.fixture
def secured(tmp_path, request):
    """A factory: secured(kind, require_auth=False) -> Secure, stopped at the end
    (with its log's tail printed if the test failed)."""
    started = []
    pki = make_pki(tmp_path / "pki")
    server_cert = pki.issue("server", "/CN=localhost")

    def make(kind: str, require_auth: bool = False) -> Secure:
        users = dict([random_user(), random_user()])
        s = start(kind, tmp_path / f"{kind}-{len(started)}", pki, server_cert, users, random_user(), require_auth)
        started.append(s)
        return s

    yield make
    failed = any(r.failed for r in request.node.stash.get(_REPORTS, {}).values())
    for s in started:
        s.server.stop()
        if failed:
            print(f"--- {s.server.kind} log (tail) ---\n{s.server.log_tail()}")


def java_client(s: Secure, *command: str, keystore: Path | None = None, jaas: Path | None = None) -> str:
    """ZooKeeper's Java client (zkCli's ZooKeeperMain) over TLS: its output."""
    props = [
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
        "-Dzookeeper.client.secure=true",
        f"-Dzookeeper.ssl.trustStore.location={s.pki.ca}", "-Dzookeeper.ssl.trustStore.type=PEM",
    ]
    if keystore:
        props += [f"-Dzookeeper.ssl.keyStore.location={keystore}", "-Dzookeeper.ssl.keyStore.type=PEM"]
    if jaas:
        props.append(f"-Djava.security.auth.login.config={jaas}")
    else:
        props.append("-Dzookeeper.sasl.client=false")
    out = subprocess.run(
        ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", *props, "-cp",
         JAVA_CLIENT_CP, "org.apache.zookeeper.ZooKeeperMain", "-server", s.secure, *command],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    return out.stdout + out.stderr


def closed(k: KazooClient) -> None:
    try:
        k.stop()
    finally:
        k.close()


@pytest.mark.parametrize("kind", KINDS)
def test_tls_and_client_certificates(secured, kind):
    s = secured(kind)
    alice_cert = s.pki.issue("alice", "/CN=alice/O=Fjord Test", server=False)
    bob_cert = s.pki.issue("bob", "/CN=bob/O=Fjord Test", server=False)
    alice_dn = subject(alice_cert[0])
    assert alice_dn == "O=Fjord Test,CN=alice"
    # A client certificate is an x509 identity ACLs can name.
    k = s.kazoo(cert=alice_cert)
    k.start(timeout=STARTUP_TIMEOUT)
    k.create("/x509-node", b"for alice", acl=[make_acl("x509", alice_dn, all=True)])
    assert k.get("/x509-node")[0] == b"for alice"
    acl, _ = k.get_acls("/x509-node")
    assert [(a.id.scheme, a.id.id) for a in acl] == [("x509", alice_dn)]
    closed(k)
    # Another certificate is another identity.
    k = s.kazoo(cert=bob_cert)
    k.start(timeout=STARTUP_TIMEOUT)
    with pytest.raises(NoAuthError):
        k.get("/x509-node")
    closed(k)
    # No client certificate: the TLS handshake is refused (clientAuth "need").
    k = s.kazoo(cert=None, connection_retry={"max_tries": 2, "delay": 0.2})
    with pytest.raises(KazooTimeoutError):
        k.start(timeout=5)
    closed(k)
    # ZooKeeper's own Java client over TLS with alice's certificate, then bob's.
    out = java_client(s, "get", "/x509-node", keystore=s.pki.keystore("alice", *alice_cert))
    assert "for alice" in out, out
    out = java_client(s, "get", "/x509-node", keystore=s.pki.keystore("bob", *bob_cert))
    assert "Insufficient permission" in out, out


@pytest.mark.parametrize("kind", KINDS)
def test_sasl_digest_md5_and_super_digest(secured, tmp_path, kind):
    s = secured(kind)
    (alice, alice_pw), (bob, bob_pw) = list(s.users.items())
    cert = s.pki.issue("client", "/CN=client", server=False)
    k = s.kazoo(cert=cert, sasl=(alice, alice_pw))
    k.start(timeout=STARTUP_TIMEOUT)
    k.create("/sasl-node", b"alice's", acl=[make_acl("sasl", alice, all=True)])
    assert k.get("/sasl-node")[0] == b"alice's"
    closed(k)
    k = s.kazoo(cert=cert, sasl=(bob, bob_pw))
    k.start(timeout=STARTUP_TIMEOUT)
    with pytest.raises(NoAuthError):
        k.get("/sasl-node")
    closed(k)
    # A wrong password: kazoo's start returns, and the login failure arrives as
    # AUTH_FAILED on the next operation.
    k = s.kazoo(cert=cert, sasl=(alice, "wrong"), connection_retry={"max_tries": 1})
    with pytest.raises(AuthFailedError):
        k.start(timeout=10)
        k.get("/sasl-node")
    closed(k)
    # The super user (superDigest) passes every ACL.
    k = s.kazoo(cert=cert, auth_data=[("digest", f"{s.admin[0]}:{s.admin[1]}")])
    k.start(timeout=STARTUP_TIMEOUT)
    assert k.get("/sasl-node")[0] == b"alice's"
    closed(k)
    # The Java client logs in through a JAAS Client section.
    jaas = tmp_path / f"client-{kind}.jaas"
    jaas.write_text(
        "Client {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
        f'  username="{alice}"\n  password="{alice_pw}";\n}};\n'
    )
    out = java_client(s, "get", "/sasl-node", keystore=s.pki.keystore("client", *cert), jaas=jaas)
    assert "alice's" in out, out


@pytest.mark.parametrize("kind", KINDS)
def test_required_authentication(secured, kind):
    s = secured(kind, require_auth=True)
    (alice, alice_pw), _ = list(s.users.items())
    cert = s.pki.issue("client", "/CN=client", server=False)
    # Without a login, the first request ends the session.
    k = s.kazoo(cert=cert, connection_retry={"max_tries": 1})
    k.start(timeout=STARTUP_TIMEOUT)
    with pytest.raises(SessionClosedRequireSaslError):
        k.get_children("/")
    closed(k)
    # With one, everything works.
    k = s.kazoo(cert=cert, sasl=(alice, alice_pw))
    k.start(timeout=STARTUP_TIMEOUT)
    assert "zookeeper" in k.get_children("/")
    k.create("/after-login", b"ok")
    closed(k)


@pytest.mark.parametrize("kind", KINDS)
def test_brokers_on_a_secured_coordinator(secured, tmp_path, kind):
    """A broker reaches the coordinator over TLS with a client certificate and a
    SASL login, and with --coordinator-set-acl creates its znodes with Kafka's
    policy: everything for its own identities, read for everyone, and SCRAM
    credentials for the brokers only. Against ZooKeeper 3.8 as well."""
    from conftest import Broker
    from kafka_helpers import consume, produce

    s = secured(kind)
    (kafka_user, kafka_pw), (other, other_pw) = list(s.users.items())
    cert = s.pki.issue("broker-client", "/CN=kafka-broker/O=Fjord Test", server=False)
    password_file = tmp_path / "coordinator-password"
    password_file.write_text(kafka_pw + "\n")
    workdir = tmp_path / "broker-1"
    workdir.mkdir()
    broker = Broker(1, workdir, s.secure, {
        "coordinator_tls_ca": s.pki.ca,
        "coordinator_tls_certificate": cert[0],
        "coordinator_tls_key": cert[1],
        "coordinator_sasl_user": kafka_user,
        "coordinator_sasl_password_file": password_file,
        "coordinator_set_acl": "true",
        "session_timeout_ms": 4000,
    })
    try:
        broker.start()
        delivered, failed = produce(broker.address, "on-secure-coordinator", [(None, b"hello")])
        assert not failed and len(delivered) == 1, failed
        assert [r.value for r in consume(broker.address, "on-secure-coordinator", [0])] == [b"hello"]
        # Store a SCRAM credential through the broker: a sensitive znode.
        out = subprocess.run(
            [str(FJORD_BIN_DIR / "fjord"), "--bootstrap", broker.address, "users", "set-scram", "carol"],
            input="carol-pw\n", capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        dn = subject(cert[0])
        other_cert = s.pki.issue("other-client", "/CN=someone-else", server=False)
        k = s.kazoo(cert=other_cert, sasl=(other, other_pw))
        k.start(timeout=STARTUP_TIMEOUT)
        ids = {(a.id.scheme, a.id.id): a.perms for a in k.get_acls("/brokers/ids/1")[0]}
        assert ids == {("sasl", kafka_user): 31, ("x509", dn): 31, ("world", "anyone"): 1}, ids
        topic_acl = {(a.id.scheme, a.id.id) for a in k.get_acls("/brokers/topics/on-secure-coordinator")[0]}
        assert ("world", "anyone") in topic_acl and ("sasl", kafka_user) in topic_acl
        # Another identity reads the cluster's layout but may not change it, and may not
        # read the credentials.
        assert k.get("/brokers/topics/on-secure-coordinator")[0]
        with pytest.raises(NoAuthError):
            k.set("/brokers/topics/on-secure-coordinator", b"{}")
        with pytest.raises(NoAuthError):
            k.get("/config/users/carol")
        closed(k)
    except BaseException:
        print(f"--- broker log (tail) ---\n{broker.log_tail()}")
        raise
    finally:
        broker.kill()


def test_secure_only_coordinator(tmp_path):
    """--secure-only: clients are served on the TLS port alone, which is the
    `listening on` address; the plain port is not opened."""
    pki = make_pki(tmp_path / "pki")
    cert, key = pki.issue("server", "/CN=localhost")
    client = pki.issue("client", "/CN=client", server=False)
    plain = free_port()
    stdout_path = tmp_path / "stdout.txt"
    command = [
        str(FJORD_BIN_DIR / "fjord-coordinator"), "--listen", f"127.0.0.1:{plain}",
        "--secure-listen", "127.0.0.1:0", "--secure-only", "--ssl-certificate", str(cert),
        "--ssl-key", str(key), "--ssl-ca", str(pki.ca), "--data-dir", str(tmp_path / "data"),
    ]
    with open(stdout_path, "wb") as out, open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=log)
    server = Server("fjord", "127.0.0.1", 0, tmp_path, tmp_path / "server.log", process)
    try:
        _wait_until(server, lambda: LISTENING_LINE.search(stdout_path.read_text()) is not None, "listening")
        text = stdout_path.read_text()
        listening = LISTENING_LINE.search(text)
        secure = SECURE_LINE.search(text)
        assert (listening.group(1), listening.group(2)) == (secure.group(1), secure.group(2)), text
        with pytest.raises(ConnectionRefusedError):
            __import__("socket").create_connection(("127.0.0.1", plain), timeout=2)
        s = Secure(server, int(secure.group(2)), pki, {}, None)
        k = s.kazoo(cert=client)
        k.start(timeout=STARTUP_TIMEOUT)
        k.create("/over-tls-only", b"ok")
        assert k.get("/over-tls-only")[0] == b"ok"
        closed(k)
    finally:
        server.stop()
