"""The Toxiproxy server process: found, started on a free loopback port, stopped.

Network faults in kconform are real: every client and broker link goes through a proxy of a
Toxiproxy server (v2.12.0, built from its Go module by ``scripts/setup``). This module finds
the server binary (``$KCONFORM_TOXIPROXY_BINARY``, the project's ``.cache/bin``, or ``PATH``)
and starts it in its own process group (:class:`ToxiproxyServer`), or hands out the address of
one already running (``$KCONFORM_TOXIPROXY_URL``, :func:`toxiproxy`). Controlling it (proxies,
toxics) is ``chaos.toxiproxy``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import attrs
import requests

from launch.child_process import ChildProcess, Supervisor, spawn
from launch.ports import free_port

BINARY_ENV = "KCONFORM_TOXIPROXY_BINARY"
URL_ENV = "KCONFORM_TOXIPROXY_URL"
VERSION = "v2.12.0"
PROJECT_BINARY = Path(__file__).resolve().parent.parent / ".cache" / "bin" / "toxiproxy-server"


class ToxiproxyError(RuntimeError):
    """The Toxiproxy server refused a request or is not usable."""


class ToxiproxyNotInstalled(ToxiproxyError):
    """No Toxiproxy server binary was found."""


def find_toxiproxy_binary() -> Path:
    override = os.environ.get(BINARY_ENV)
    candidates = [Path(override)] if override else [PROJECT_BINARY]
    on_path = shutil.which("toxiproxy-server")
    if not override and on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ToxiproxyNotInstalled(
        f"no Toxiproxy server at {', '.join(str(c) for c in candidates)}: run scripts/setup "
        f"(it builds github.com/Shopify/toxiproxy/v2/cmd/server@{VERSION} into .cache/bin), "
        f"set {BINARY_ENV}=/path/to/toxiproxy-server, or {URL_ENV}=http://host:port of a "
        "running server"
    )


@attrs.define
class ToxiproxyServer(Supervisor):
    """A Toxiproxy server process on a free loopback port; a context manager.

    ``seed`` makes the server's random choices (toxicity rolls, jitter) reproducible.
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 1
    start_timeout_s: float = 15.0
    _child: ChildProcess | None = attrs.field(default=None, init=False)
    _log: IO[bytes] | None = attrs.field(default=None, init=False)
    _workdir: Path | None = attrs.field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return None if self._workdir is None else self._workdir / "toxiproxy.log"

    def start(self) -> ToxiproxyServer:
        binary = find_toxiproxy_binary()
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="kconform-toxiproxy-"))
        if self.port == 0:
            self.port = free_port(self.host)
        assert self.log_path is not None
        self._log = open(self.log_path, "ab")
        self._child = spawn(
            [str(binary), "-host", self.host, "-port", str(self.port), "-seed", str(self.seed)],
            stdout=self._log, stderr=self._log,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                break
            try:
                requests.get(f"{self.url}/version", timeout=0.5).raise_for_status()
                return self
            except requests.RequestException:
                time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.kill()
        raise ToxiproxyError(f"Toxiproxy server at {self.url} did not come up:\n{tail}")

    def _release(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.kill()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


@contextmanager
def toxiproxy(seed: int = 1) -> Iterator[str]:
    """The URL of a Toxiproxy server: ``$KCONFORM_TOXIPROXY_URL`` if set, else one started
    (and stopped afterwards) for the caller."""
    url = os.environ.get(URL_ENV)
    if url:
        yield url.rstrip("/")
        return
    with ToxiproxyServer(seed=seed) as server:
        yield server.url
