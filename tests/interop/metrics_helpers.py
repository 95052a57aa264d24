"""Scraping the servers' HTTP endpoints (`--http-listen`) in tests.

Expositions are parsed with the `prometheus-client` package's parsers (the
Prometheus text format and OpenMetrics), so a test fails on anything a real
Prometheus client would reject.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

HTTP_LINE = re.compile(r"^http listening on (\S+)$", re.MULTILINE)
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def http_address(stdout_path: Path) -> str:
    """The `http listening on ADDR` address a server printed."""
    match = HTTP_LINE.search(stdout_path.read_text(errors="replace"))
    assert match, f"no `http listening on` line in {stdout_path}"
    return match.group(1)


def broker_http(broker) -> str:
    """A broker's HTTP address, from its latest start's stdout."""
    return http_address(broker.workdir / f"stdout-{broker.starts - 1}.txt")


def http_get(address: str, path: str, accept: str | None = None, timeout: float = 10.0):
    """GET http://address/path: (status, content type, body text)."""
    request = urllib.request.Request(f"http://{address}{path}")
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


class Scrape:
    """One parsed scrape: samples by name, with their labels."""

    def __init__(self, text: str, openmetrics: bool = False):
        self.text = text
        parse = parse_openmetrics if openmetrics else parse_prometheus
        self.families = {f.name: f for f in parse(text)}
        self.samples: dict[str, list[tuple[dict, float]]] = {}
        for family in self.families.values():
            for s in family.samples:
                self.samples.setdefault(s.name, []).append((dict(s.labels), s.value))

    def value(self, name: str, **labels) -> float:
        """The one sample of `name` with exactly `labels`."""
        found = [v for l, v in self.samples.get(name, []) if l == labels]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples in {self.samples.get(name)}"
        return found[0]

    def values(self, name: str, **labels) -> list[tuple[dict, float]]:
        """Every sample of `name` whose labels include `labels`."""
        return [
            (l, v)
            for l, v in self.samples.get(name, [])
            if all(l.get(k) == str(w) for k, w in labels.items())
        ]

    def total(self, name: str, **labels) -> float:
        return sum(v for _, v in self.values(name, **labels))


def scrape(address: str, openmetrics: bool = False) -> Scrape:
    """GET /metrics and parse it; checks the content type negotiated."""
    status, content_type, body = http_get(address, "/metrics", OPENMETRICS if openmetrics else None)
    assert status == 200, f"/metrics answered {status}: {body[:500]}"
    if openmetrics:
        assert content_type.startswith("application/openmetrics-text"), content_type
        assert body.endswith("# EOF\n")
    else:
        assert content_type.startswith("text/plain; version=0.0.4"), content_type
    return Scrape(body, openmetrics)


def promtool_lint(text: str) -> tuple[int, set[str]]:
    """`promtool check metrics` on an exposition: (exit code, names it
    complains about). None if promtool is not installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return None
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    problems = {
        line.split()[0] for line in (done.stdout + done.stderr).splitlines() if line.strip()
    }
    return done.returncode, problems
