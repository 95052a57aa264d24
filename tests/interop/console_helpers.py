"""The web console (`fjord console`) and a real browser for its tests.

The browser is Debian's Chromium driven by Selenium through Debian's
chromedriver: headless, without the sandbox (tests run as root), with
background networking off and a fresh profile per browser. Screenshots go
to FJORD_CONSOLE_SHOTS (default target/console-screenshots), kept as test
artifacts and never committed.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from conftest import FJORD_BIN_DIR, STARTUP_TIMEOUT

REPO = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("FJORD_CONSOLE_SHOTS", REPO / "target" / "console-screenshots"))
LISTENING = re.compile(r"^listening on (\S+)$", re.MULTILINE)


@dataclass
class Console:
    process: subprocess.Popen
    url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_console(cluster, workdir: Path, allow_writes: bool) -> Console:
    """`fjord console --listen 127.0.0.1:0` for `cluster`; waits for its
    `listening on` line."""
    workdir.mkdir(parents=True, exist_ok=True)
    stdout = workdir / "stdout.txt"
    log_path = workdir / "console.log"
    command = [
        str(FJORD_BIN_DIR / "fjord"),
        "--bootstrap",
        cluster.bootstrap,
        "--coordinator",
        cluster.coordinator.address,
        "console",
        "--listen",
        "127.0.0.1:0",
    ]
    if allow_writes:
        command.append("--allow-writes")
    with open(stdout, "wb") as out, open(log_path, "wb") as err:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        match = LISTENING.search(stdout.read_text(errors="replace"))
        if match:
            return Console(process, f"http://{match.group(1)}", log_path)
        if process.poll() is not None:
            raise RuntimeError(f"the console exited with {process.returncode}: {log_path.read_text()}")
        time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"the console did not print `listening on`: {log_path.read_text()}")


def browser(profile: Path) -> webdriver.Chrome:
    """A headless Chromium with a fresh profile in `profile`."""
    options = Options()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1366,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    return driver


def console_errors(driver) -> list[str]:
    """The browser console's errors and warnings since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def screenshot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
