"""Certificates, users and client settings for the security tests.

Certificates come from the `openssl` command line: a CA, server
certificates valid for 127.0.0.1 and localhost (librdkafka checks the host
name by default), and client certificates whose subject becomes the
principal. SCRAM credentials are computed here in Kafka's stored format, so
tests can check the brokers against credentials they did not write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass
class Pki:
    """Files of one test PKI, all PEM."""

    dir: Path
    ca: Path
    ca_key: Path

    def issue(self, name: str, subject: str, server: bool = True) -> tuple[Path, Path]:
        """A certificate (and its key) signed by this CA: (cert, key)."""
        key = self.dir / f"{name}.key"
        csr = self.dir / f"{name}.csr"
        cert = self.dir / f"{name}.pem"
        ext = self.dir / f"{name}.ext"
        if server:
            ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
        else:
            ext.write_text("extendedKeyUsage=clientAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subject, cwd=self.dir)
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-sha256", "-extfile", str(ext),
            cwd=self.dir,
        )
        return cert, key

    def keystore(self, name: str, cert: Path, key: Path) -> Path:
        """A PEM "keystore": the PKCS#8 key followed by the certificate."""
        p8 = self.dir / f"{name}.p8"
        _openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(key), "-out", str(p8), cwd=self.dir)
        out = self.dir / f"{name}-keystore.pem"
        out.write_text(p8.read_text() + cert.read_text())
        return out


def make_pki(directory: Path, name: str = "ca") -> Pki:
    """A fresh CA in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = directory / f"{name}.key"
    ca = directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", f"/CN=Fjord test {name}",
        cwd=directory,
    )
    return Pki(directory, ca, ca_key)


def scram_credential(password: str, mechanism: str = "SCRAM-SHA-256", iterations: int = 4096) -> str:
    """Kafka's stored form of a SCRAM credential (RFC 5802 keys)."""
    algo = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
    salt = os.urandom(32)
    salted = hashlib.pbkdf2_hmac(algo, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", algo).digest()
    stored_key = hashlib.new(algo, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", algo).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"salt={b64(salt)},stored_key={b64(stored_key)},server_key={b64(server_key)},iterations={iterations}"


def user_znode(password: str, mechanisms=("SCRAM-SHA-256", "SCRAM-SHA-512")) -> bytes:
    """The data of `/config/users/<user>` as Kafka writes it."""
    config = {m: scram_credential(password, m) for m in mechanisms}
    return json.dumps({"version": 1, "config": config}).encode()


def write_user(kazoo, user: str, password: str, mechanisms=("SCRAM-SHA-256", "SCRAM-SHA-512")) -> None:
    """Stores a user's SCRAM credentials the way Kafka's tools do: the user
    znode, then a change notification."""
    path = f"/config/users/{user}"
    data = user_znode(password, mechanisms)
    if kazoo.exists(path):
        kazoo.set(path, data)
    else:
        kazoo.create(path, data, makepath=True)
    kazoo.create(
        "/config/changes/config_change_",
        json.dumps({"version": 2, "entity_path": f"users/{user}"}).encode(),
        sequence=True,
        makepath=True,
    )


def random_user() -> tuple[str, str]:
    """A random user name and password for one test run."""
    return f"user-{secrets.token_hex(4)}", secrets.token_urlsafe(18)


def rdkafka_config(protocol: str, ca: Path | None = None, user: str | None = None,
                   password: str | None = None, mechanism: str = "SCRAM-SHA-256",
                   cert: Path | None = None, key: Path | None = None) -> dict:
    """librdkafka (kcat, confluent-kafka) properties for a secured listener."""
    config = {"security.protocol": protocol}
    if ca is not None:
        config["ssl.ca.location"] = str(ca)
    if user is not None:
        config.update({"sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password})
    if cert is not None:
        config.update({"ssl.certificate.location": str(cert), "ssl.key.location": str(key)})
    return config
