"""ZooKeeper's AdminServer API (`GET /commands/<name>`) on fjord-coordinator,
against Debian's ZooKeeper 3.8 with its AdminServer on: the same scenario on
both, the same commands (by name and by four-letter alias), the same keys in
every answer, and the same values where both servers must agree."""

from __future__ import annotations

import json
import re

import pytest
from kazoo.client import KazooClient

from conftest import STARTUP_TIMEOUT, _start_fjord, _start_zookeeper, free_port
from metrics_helpers import http_address, http_get

SERVLET_API = "/usr/share/java/servlet-api.jar"
# (name, alias) of the commands compared.
COMMANDS = [
    ("monitor", "mntr"),
    ("server_stats", "srvr"),
    ("stats", "stat"),
    ("connections", "cons"),
    ("dump", "dump"),
    ("watches_by_path", "wchp"),
    ("watches", "wchc"),
    ("watch_summary", "wchs"),
    ("environment", "envi"),
    ("configuration", "conf"),
    ("ruok", "ruok"),
    ("is_read_only", "isro"),
]
# Objects whose keys are data (session ids, paths, expiry times), not fields.
KEYED_BY_DATA = {
    "expiry_time_to_session_ids",
    "session_id_to_ephemeral_paths",
    "path_to_session_ids",
    "session_id_to_watched_paths",
}


@pytest.fixture
def both(tmp_path):
    """A ZooKeeper 3.8 with its AdminServer and a fjord-coordinator with
    --http-listen: {kind: (server, http address)}."""
    started = []
    try:
        zk_dir = tmp_path / "zookeeper"
        (zk_dir / "data").mkdir(parents=True)
        admin_port = free_port()
        zk = _start_zookeeper(
            zk_dir,
            extra_config=[
                "admin.enableServer=true",
                "admin.serverAddress=127.0.0.1",
                f"admin.serverPort={admin_port}",
            ],
            classpath=SERVLET_API,
        )
        started.append(zk)
        fj_dir = tmp_path / "fjord"
        (fj_dir / "data").mkdir(parents=True)
        fj = _start_fjord(fj_dir, ("--http-listen", "127.0.0.1:0"))
        started.append(fj)
        yield {
            "zookeeper": (zk, f"127.0.0.1:{admin_port}"),
            "fjord": (fj, http_address(fj_dir / "stdout.txt")),
        }
    finally:
        for s in started:
            s.stop()


# Summary sets named after data: a top-level znode (`app_read_per_namespace`)
# or a follower's id (`2_learner_handler_qp_size`).
DATA_NAMED = re.compile(r"^(avg|min|max|cnt|sum|p50|p95|p99|p999)_(.+?)_((read|write)_per_namespace)$")
FOLLOWER_NAMED = re.compile(r"^(avg|min|max|cnt|sum|p50|p95|p99|p999)_\d+_(learner_handler_.+)$")


def fold(key: str) -> str:
    """A monitor key with its data part (namespace, follower id) as `*`."""
    key = DATA_NAMED.sub(r"\1_*_\3", key)
    return FOLLOWER_NAMED.sub(r"\1_*_\2", key)


def shape(value, key: str = "") -> set[str]:
    """The key paths of a JSON value (`/server_stats/uptime`), with the keys
    of data-keyed objects, data-named summaries and list positions folded."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            name = "*" if key.rsplit("/", 1)[-1] in KEYED_BY_DATA else fold(k)
            out.add(f"{key}/{name}")
            out |= shape(v, f"{key}/{name}")
    elif isinstance(value, list):
        for v in value:
            out |= shape(v, f"{key}[]")
    return out


def scenario(address: str) -> KazooClient:
    """One session with an ephemeral node, data and child watches, a read."""
    zk = KazooClient(hosts=address)
    zk.start(timeout=STARTUP_TIMEOUT)
    zk.create("/app", b'{"a":1}')
    zk.create("/app/e", b"x", ephemeral=True)
    zk.get("/app", watch=lambda e: None)
    zk.get_children("/app", watch=lambda e: None)
    zk.exists("/app/e", watch=lambda e: None)
    return zk


def test_admin_server_commands_match_zookeeper(both):
    clients = {kind: scenario(server.address) for kind, (server, _) in both.items()}
    try:
        answers = {}
        for kind, (_, http) in both.items():
            for name, alias in COMMANDS:
                status, content_type, body = http_get(http, f"/commands/{name}")
                assert status == 200, (kind, name, body)
                assert content_type.startswith("application/json"), (kind, name, content_type)
                answer = json.loads(body)
                assert answer["command"] == name and answer["error"] is None, (kind, answer)
                by_alias = json.loads(http_get(http, f"/commands/{alias}")[2])
                assert by_alias["command"] == name, (kind, alias, by_alias)
                answers[kind, name] = answer
            listing = http_get(http, "/commands")
            assert listing[0] == 200
            for name, _ in COMMANDS:
                assert f'href="/commands/{name}"' in listing[2], (kind, name)
        for name, _ in COMMANDS:
            zk_keys = shape(answers["zookeeper", name])
            fj_keys = shape(answers["fjord", name])
            assert zk_keys == fj_keys, (
                f"{name}: only in ZooKeeper {sorted(zk_keys - fj_keys)}, "
                f"only in Fjord {sorted(fj_keys - zk_keys)}"
            )

        # Values both must agree on.
        def session(kind):
            return clients[kind]._session_id

        for kind in both:
            a = {name: answers[kind, name] for name, _ in COMMANDS}
            sid = session(kind)
            assert a["monitor"]["server_state"] == "standalone"
            assert a["monitor"]["ephemerals_count"] == 1
            assert a["monitor"]["global_sessions"] == 1
            assert a["monitor"]["num_alive_connections"] == 1
            assert a["monitor"]["cnt_app_write_per_namespace"] == 2, kind
            assert a["monitor"]["sum_app_write_per_namespace"] == 18, kind
            assert a["server_stats"]["server_stats"]["server_state"] == "standalone"
            assert a["server_stats"]["read_only"] is False
            assert a["is_read_only"]["read_only"] is False
            assert a["dump"]["session_id_to_ephemeral_paths"] == {str(sid): ["/app/e"]}, kind
            assert [sid] in a["dump"]["expiry_time_to_session_ids"].values(), kind
            assert a["watches_by_path"]["path_to_session_ids"] == {
                "/app": [sid],
                "/app/e": [sid],
            }, kind
            assert a["watches"]["session_id_to_watched_paths"] == {str(sid): ["/app", "/app/e"]}
            assert a["watch_summary"]["num_connections"] == 1
            assert a["watch_summary"]["num_paths"] == 2
            [conn] = a["connections"]["connections"]
            assert conn["session_id"] == sid
            assert conn["session_timeout"] > 0 and conn["remote_socket_address"].startswith("127.0.0.1:")
            assert a["configuration"]["tick_time"] == 200
            assert a["configuration"]["client_port"] == both[kind][0].port
        unknown = {kind: json.loads(http_get(http, "/commands/nosuch")[2]) for kind, (_, http) in both.items()}
        assert unknown["fjord"] == unknown["zookeeper"] == {
            "command": "nosuch",
            "error": "Unknown command: nosuch",
        }
    finally:
        for zk in clients.values():
            zk.stop()
            zk.close()


@pytest.fixture
def ensembles(tmp_path):
    """A 3-server ZooKeeper 3.8 ensemble with AdminServers, and a 3-member
    fjord-coordinator ensemble with --http-listen."""
    from ensemble import FjordEnsemble, ZooKeeperEnsemble

    started = []
    try:
        for kind, cls in (("zookeeper", ZooKeeperEnsemble), ("fjord", FjordEnsemble)):
            e = cls(tmp_path / kind, admin=True)
            started.append(e)
            e.start()
        yield dict(zip(("zookeeper", "fjord"), started))
    finally:
        for e in started:
            e.stop()


# The commands whose answers depend on the member's role.
ROLE_COMMANDS = ["monitor", "server_stats", "stats", "configuration", "connections", "dump", "is_read_only"]


def test_admin_server_on_ensembles_matches_zookeeper(ensembles):
    clients = {kind: scenario(e.address) for kind, e in ensembles.items()}
    try:
        for role in ("leader", "follower"):
            shapes = {}
            for kind, e in ensembles.items():
                leader = e.wait_for_quorum()
                sid = leader if role == "leader" else next(s for s in e.members if s != leader)
                http = e.members[sid].http_address
                # A client of this member (its connection lists are not empty) that
                # reads, so the member's per-namespace read summary exists.
                pinned = KazooClient(hosts=e.members[sid].address)
                pinned.start(timeout=STARTUP_TIMEOUT)
                try:
                    pinned.get("/app")
                    for name in ROLE_COMMANDS:
                        status, _, body = http_get(http, f"/commands/{name}")
                        assert status == 200, (kind, role, name, body)
                        answer = json.loads(body)
                        assert answer["error"] is None, (kind, role, answer)
                        shapes[kind, name] = shape(answer)
                finally:
                    pinned.stop()
                    pinned.close()
                monitor = json.loads(http_get(http, "/commands/monitor")[2])
                assert monitor["server_state"] == role, (kind, monitor["server_state"])
            for name in ROLE_COMMANDS:
                zk_keys, fj_keys = shapes["zookeeper", name], shapes["fjord", name]
                assert zk_keys == fj_keys, (
                    f"{role} {name}: only in ZooKeeper {sorted(zk_keys - fj_keys)}, "
                    f"only in Fjord {sorted(fj_keys - zk_keys)}"
                )
    finally:
        for zk in clients.values():
            zk.stop()
            zk.close()
