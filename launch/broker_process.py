"""Launch a reference broker as a real OS process and control it: stop, kill, pause, restart.

Tests, benchmarks and the harness use this to run brokers exactly as users do (``python -m
reference_broker``), never in-process. The port is a free one below the kernel's ephemeral
range (``launch.ports``), so parallel test workers never collide and a restart finds it free
again: a port from the ephemeral range could be taken, between stop and start, as the local
port of any outgoing connection on the machine. Restarts reuse it so clients reconnect to the
same address; port 0 (the kernel's choice, read back from the broker's "ready" line) is still
accepted. Every process is started in its own process group
and is killed on exit, also when the caller fails or is interrupted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from launch.child_process import ChildProcess, Supervisor, spawn
from launch.ports import free_port

READY = re.compile(r"ready: listening on (\S+), advertising (\S+),")
DEFAULT_START_TIMEOUT_S = 30.0


class BrokerStartError(RuntimeError):
    """The broker process exited or stayed silent instead of printing its ready line."""


def _first_port(listeners: str) -> int:
    return int(listeners.split(",")[0].rsplit(":", 1)[1])


class BrokerProcess(Supervisor):
    """One reference broker process over a data directory it may own."""

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        host: str = "127.0.0.1",
        log_level: str = "INFO",
        port: int | None = None,
        listener_name: str = "PLAINTEXT",
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="kconform-broker-")) if data_dir is None else data_dir
        self.host = host
        self.port = free_port(host) if port is None else port
        self.listener_name = listener_name
        self.overrides = dict(overrides or {})
        self.log_level = log_level
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "broker.log"
        self._child: ChildProcess | None = None
        self._stderr: IO[str] | None = None
        self.advertised = ""

    # --- addresses -----------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    # --- lifecycle -----------------------------------------------------------------------------

    def command(self) -> list[str]:
        settings = {
            "listeners": f"{self.listener_name}://{self.host}:{self.port}",
            "log.dirs": str(self.data_dir / "data"),
            **self.overrides,
        }
        cmd = [sys.executable, "-m", "reference_broker", "--log-level", self.log_level]
        for key, value in settings.items():
            cmd += ["--override", f"{key}={value}"]
        return cmd

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> BrokerProcess:
        self.launch()
        return self.wait_started(timeout_s)

    def launch(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_started`): a cluster
        launches all its nodes first, then waits for them together."""
        if self.running:
            raise RuntimeError("broker is already running")
        self._stderr = open(self.log_path, "a")
        self._child = spawn(self.command(), stdout=subprocess.PIPE, stderr=self._stderr, text=True)

    def wait_started(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> BrokerProcess:
        """Wait for the ready line of a launched process (it kills the process on failure)."""
        line = self._read_ready_line(timeout_s)
        match = READY.search(line)
        if match is None:
            self.kill()
            raise BrokerStartError(self._failure(f"no ready line, got {line!r}"))
        self.port = _first_port(match.group(1))
        self.advertised = match.group(2)
        return self

    def _read_ready_line(self, timeout_s: float) -> str:
        assert self._child is not None and self._child.popen.stdout is not None
        stdout = self._child.popen.stdout
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not result or not result[0]:
            code = self._child.popen.poll()
            what = f"exited with {code}"
            if code is None and self._child.catches(signal.SIGUSR1):
                # Still running: its stacks (faulthandler, reference_broker/__main__.py) go to its log.
                self._child.signal(signal.SIGUSR1)
                time.sleep(1.0)
                what = (f"not ready after {timeout_s}s (load average {os.getloadavg()[0]:.1f}; every thread's "
                        "stack is at the end of its log below)")
            elif code is None:
                what = (f"not ready after {timeout_s}s (load average {os.getloadavg()[0]:.1f}; still starting "
                        "Python: it had not yet set up its stack dump)")
            self.kill()
            raise BrokerStartError(self._failure(what))
        return result[0]

    def _failure(self, what: str) -> str:
        tail = self.log_path.read_text()[-8000:] if self.log_path.exists() else ""
        return f"reference broker {what}; command: {' '.join(self.command())}\n{tail}"

    def restart(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> BrokerProcess:
        """Stop cleanly (if running) and start again on the same port and data."""
        self.stop()
        return self.start(timeout_s)

    def _release(self) -> None:
        assert self._child is not None
        if self._child.popen.stdout is not None:
            self._child.popen.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        """Kill the broker and remove what this object created."""
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

