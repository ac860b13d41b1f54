"""A real headless Chromium driven over the W3C WebDriver protocol, for tests of report pages.

ChromeDriver speaks WebDriver as JSON over HTTP, so the standard library is the whole client:
start ``chromedriver`` on a free loopback port, open a session whose browser is Debian's
Chromium (headless, with the flags that keep it off the network: this machine's network is
closed and the page must not need it), load a file, run a script in it, take a screenshot.
``scripts/setup`` installs both programs (Debian packages ``chromium`` and
``chromium-driver``); without them :func:`browser_or_skip` skips with the reason.

Everything started here (chromedriver, Chromium and its profile directory) is removed when the
context manager exits, on failure and on Ctrl-C too: chromedriver runs in a process group of its
own, killed whole.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from launch.ports import free_port

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
# Keep Chromium off the network (background services, updates, sync) and able to run as root.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")
START_TIMEOUT_S = 30.0
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy


def browser_or_skip() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or skip the test saying what is missing."""
    chromium = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None)
        pytest.skip(f"no headless browser: {missing} not installed (scripts/setup installs the Debian packages "
                    "chromium and chromium-driver when it runs as root)")
    return chromium, driver


class Page:
    """One WebDriver session showing one page."""

    def __init__(self, base: str, session: str) -> None:
        self.base, self.session = base, session

    def script(self, source: str) -> Any:
        """Run ``source`` (a function body; ``return`` gives the value) in the page."""
        return _call("POST", f"{self.base}/session/{self.session}/execute/sync", {"script": source, "args": []})

    def click(self, css: str) -> None:
        """Click the first element ``css`` selects, as a user would (the browser scrolls to it)."""
        found = _call("POST", f"{self.base}/session/{self.session}/element", {"using": "css selector", "value": css})
        element = next(iter(found.values()))
        _call("POST", f"{self.base}/session/{self.session}/element/{element}/click", {})

    def screenshot(self, path: Path, width: int, height: int | None = None) -> None:
        """The page as a PNG, ``width`` wide: its top ``height`` pixels, or the whole page (the
        window is first made as tall as the document)."""
        if height is None:
            height = int(self.script("return document.documentElement.scrollHeight"))
        _call("POST", f"{self.base}/session/{self.session}/window/rect", {"width": width, "height": height})
        png = _call("GET", f"{self.base}/session/{self.session}/screenshot")
        path.write_bytes(base64.b64decode(png))


@contextmanager
def open_page(path: Path, width: int = 1200, height: int = 900) -> Iterator[Page]:
    """``path`` loaded in a fresh headless Chromium; everything torn down on exit."""
    chromium, driver = browser_or_skip()
    port = free_port()
    profile = tempfile.mkdtemp(prefix="kconform-chromium-")
    log = tempfile.NamedTemporaryFile(prefix="kconform-chromedriver-", suffix=".log", delete=False)
    process = subprocess.Popen([driver, f"--port={port}", "--allowed-ips=127.0.0.1"], stdout=log, stderr=log,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, Path(log.name))
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium, "args": [*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]}}}}
        session = _call("POST", f"{base}/session", caps)["sessionId"]
        try:
            _call("POST", f"{base}/session/{session}/url", {"url": path.resolve().as_uri()})
            yield Page(base, session)
        finally:
            try:
                _call("DELETE", f"{base}/session/{session}")
            except OSError:
                pass
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        log.close()
        os.unlink(log.name)
        shutil.rmtree(profile, ignore_errors=True)


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromedriver exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if _call("GET", f"{base}/status").get("ready"):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"chromedriver did not answer within {START_TIMEOUT_S:.0f} s: {log.read_text()[-2000:]}")


def _call(method: str, url: str, body: Any = None) -> Any:
    """One WebDriver command; its ``value``, or a RuntimeError with the driver's message."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _DIRECT.open(request, timeout=60) as response:
            return json.loads(response.read())["value"]
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("value", {})
        raise RuntimeError(f"WebDriver {method} {url}: {detail.get('error')}: {detail.get('message')}") from None
