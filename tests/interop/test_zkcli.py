"""ZooKeeper's own command-line client, zkCli.sh, against the server.

zkCli is what operators reach for, and it is the Java client: it checks
reply xids strictly, sends setWatches2 and addWatch, and prints every watch
event it receives. A JVM is slow to start, so each test starts zkCli once:
either one-shot (the command on the command line; zkCli then exits without
closeSession) or interactive, with commands fed on stdin (`quit` closes the
session).

FJORD_ZKCLI overrides where zkCli.sh is (default: the Debian package's).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

ZKCLI = os.environ.get("FJORD_ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")
WAIT = 30.0  # seconds; a cold JVM on a busy machine needs a while
# zkCli.sh passes these to its JVM: a quick start matters more than speed.
CLI_ENV = {**os.environ, "CLIENT_JVMFLAGS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}


def _kill_group(process: subprocess.Popen) -> None:
    """zkCli.sh runs java as a child: kill the whole process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(WAIT)


def run_zkcli(server, *args: str, script: str | None = None) -> tuple[int, str]:
    """Run zkCli to completion; returns (exit code, stdout and stderr)."""
    process = subprocess.Popen(
        [ZKCLI, "-server", server.address, *args],
        stdin=subprocess.PIPE if script is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=CLI_ENV,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(script, timeout=WAIT)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        pytest.fail(f"zkCli {args or 'script'} did not finish within {WAIT}s")
    return process.returncode, output


class InteractiveZkCli:
    """A zkCli whose stdin we write a line at a time while its output is
    collected by a reader thread, so a test can act in between."""

    def __init__(self, server) -> None:
        self._process = subprocess.Popen(
            [ZKCLI, "-server", server.address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=CLI_ENV,
            start_new_session=True,
        )
        self._lines: queue.Queue = queue.Queue()
        self.transcript: list[str] = []
        self._markers = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\n"))

    def send(self, command: str) -> None:
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()

    def expect(self, pattern: str, timeout: float = WAIT) -> list[str]:
        """Collect output lines until one matches `pattern`; returns them."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"zkCli never printed /{pattern}/; it printed: {seen}")
            seen.append(line)
            self.transcript.append(line)
            if re.search(pattern, line):
                return seen

    def barrier(self) -> list[str]:
        """Wait until zkCli has run every command sent so far; returns the
        output in between. zkCli runs commands in order, so a read whose
        answer we can recognise marks the point."""
        self._markers += 1
        path = f"/zkcli-marker-{self._markers}"
        self.send(f"get {path}")
        return self.expect(re.escape(f"Node does not exist: {path}"))[:-1]

    def quit(self) -> str:
        """`quit` (closeSession) and wait for exit; returns remaining output."""
        self.send("quit")
        try:
            self._process.wait(WAIT)
        except subprocess.TimeoutExpired:
            _kill_group(self._process)
            pytest.fail("zkCli did not exit after quit")
        rest = []
        while not self._lines.empty():
            rest.append(self._lines.get())
        self.transcript += rest
        return "\n".join(rest)

    def kill(self) -> None:
        if self._process.poll() is None:
            _kill_group(self._process)


@pytest.fixture
def interactive_zkcli(server):
    clis: list[InteractiveZkCli] = []

    def start() -> InteractiveZkCli:
        cli = InteractiveZkCli(server)
        clis.append(cli)
        return cli

    yield start
    for cli in clis:
        cli.kill()


def watched_event(kind: str, path: str) -> str:
    return f"WatchedEvent state:SyncConnected type:{kind} path:{path}"


def test_one_shot_commands_leave_session_to_expire(server, kazoo_client):
    zk = kazoo_client()
    zk.create("/oneshot", b"")

    code, output = run_zkcli(server, "create", "-e", "/oneshot/eph", "hello")
    assert code == 0, output
    assert "Created /oneshot/eph" in output
    # zkCli exited without closeSession: the node outlives the process...
    assert zk.get("/oneshot/eph")[0] == b"hello"
    assert zk.exists("/oneshot/eph").ephemeralOwner != 0
    # ...until the server expires the session (at most 20 ticks = 4 s).
    gone = threading.Event()
    if zk.exists("/oneshot/eph", watch=lambda event: gone.set()) is not None:
        assert gone.wait(WAIT), "ephemeral of an abandoned zkCli session never expired"
    assert zk.exists("/oneshot/eph") is None

    code, output = run_zkcli(server, "get", "/oneshot/missing")
    assert code == 1
    assert "Node does not exist: /oneshot/missing" in output


def test_script_of_basic_commands(server, kazoo_client):
    script = "\n".join(
        [
            "create /cli hello",
            "create -e /cli/eph e",
            "create -s /cli/seq- s",
            "create -s /cli/seq- s",
            "ls /cli",
            "get /cli",
            "set /cli world",
            "get /cli",
            "stat /cli",
            "delete /cli/seq-0000000001",
            "ls /cli",
            "delete /cli",
            "get /cli/missing",
            "quit",
            "",
        ]
    )
    _, output = run_zkcli(server, script=script)
    lines = output.splitlines()

    # The sequence counter counts every child created, the ephemeral too.
    for created in ("/cli", "/cli/eph", "/cli/seq-0000000001", "/cli/seq-0000000002"):
        assert f"Created {created}" in lines, output
    assert "[eph, seq-0000000001, seq-0000000002]" in lines
    assert "[eph, seq-0000000002]" in lines
    assert lines.count("hello") == 1 and lines.count("world") == 1
    assert lines.index("hello") < lines.index("world")
    stat = dict(re.findall(r"^(\w+) = (.*)$", output, re.MULTILINE))
    assert stat["dataVersion"] == "1"
    assert stat["cversion"] == "3"
    assert stat["numChildren"] == "3"
    assert stat["dataLength"] == "5"
    assert stat["ephemeralOwner"] == "0x0"
    assert int(stat["mZxid"], 16) > int(stat["cZxid"], 16)
    assert "Node not empty: /cli" in lines
    assert "Node does not exist: /cli/missing" in lines

    # quit closed the session, so its ephemeral is already gone.
    zk = kazoo_client()
    assert zk.get_children("/cli") == ["seq-0000000002"]


def test_add_watch_persistent_recursive_and_one_shot_watch(interactive_zkcli, kazoo_client):
    zk = kazoo_client()
    zk.create("/other")
    cli = interactive_zkcli()
    cli.send("addWatch -m PERSISTENT_RECURSIVE /w")
    cli.send("ls -w /other")
    assert "[]" in cli.barrier()

    zk.create("/w", b"0")
    cli.expect(re.escape(watched_event("NodeCreated", "/w")))
    zk.create("/w/x", b"1")
    cli.expect(re.escape(watched_event("NodeCreated", "/w/x")))
    zk.set("/w/x", b"2")
    cli.expect(re.escape(watched_event("NodeDataChanged", "/w/x")))
    zk.delete("/w/x")
    cli.expect(re.escape(watched_event("NodeDeleted", "/w/x")))
    zk.create("/other/c")
    cli.expect(re.escape(watched_event("NodeChildrenChanged", "/other")))
    zk.create("/other/d")  # the one-shot watch is spent: no second event
    cli.barrier()
    cli.quit()

    events = [line for line in cli.transcript if line.startswith("WatchedEvent")]
    assert events == [
        "WatchedEvent state:SyncConnected type:None path:null",
        watched_event("NodeCreated", "/w"),
        watched_event("NodeCreated", "/w/x"),
        watched_event("NodeDataChanged", "/w/x"),
        watched_event("NodeDeleted", "/w/x"),
        watched_event("NodeChildrenChanged", "/other"),
        "WatchedEvent state:Closed type:None path:null",
    ]
