"""One node of a cluster kconform runs, and everything a fault or a test does to it.

A reference cluster's controller and brokers and an Apache Kafka cluster's JVMs are different
programs with the same life: started (and waited for), stopped cleanly, killed, paused and
resumed, restarted on the same ports and data, or wiped (a replaced disk) and started empty
under the same id. :class:`ManagedNode` is that life, once; a node says how to launch its
process, how to know it has started and how to format its data directory, and hands over the
:class:`~launch.child_process.Supervisor` that signals the process.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from launch.child_process import Supervisor


class ProcessControl(Protocol):
    """What a fault can do to any process kconform runs: a cluster node (:class:`ManagedNode`)
    or a single launched process (a :class:`~launch.child_process.Supervisor` such as Tansu)."""

    @property
    def running(self) -> bool: ...

    def start(self) -> object: ...

    def stop(self) -> object: ...

    def kill(self) -> object: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class ManagedNode:
    """A node whose process is :attr:`process`; ``paused`` says whether it is SIGSTOPped."""

    process: Supervisor
    node_id: int
    address: tuple[str, int]  # (host, port) where clients really reach it
    paused: bool = False
    start_timeout_s: float = 30.0  # how long a start may take to serve requests
    stop_timeout_s: float = 20.0  # how long a clean stop may take before SIGKILL

    # --- what a node provides ----------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        raise NotImplementedError

    def launch(self) -> None:
        """Start the process (do not wait)."""
        raise NotImplementedError

    def wait_started(self, timeout_s: float | None = None) -> None:
        """Until the node serves requests; raises when it exits or does not in time
        (``timeout_s``, default :attr:`start_timeout_s`)."""
        raise NotImplementedError

    def format(self) -> None:
        """Prepare an empty data directory for this node id."""
        raise NotImplementedError

    # --- what can be done to it ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def start(self, timeout_s: float | None = None) -> None:
        """Start it (same ports, same data) and wait until it serves."""
        self.paused = False
        self.launch()
        self.wait_started(timeout_s)

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM and wait for a clean exit (a broker moves its leadership away first)."""
        self.paused = False
        return self.process.stop(self.stop_timeout_s if timeout_s is None else timeout_s)

    def kill(self) -> int | None:
        """SIGKILL, as a crash or power cut ends it."""
        self.paused = False
        return self.process.kill()

    def pause(self) -> None:
        """SIGSTOP: it holds its sockets and says nothing (a hung process, a long GC pause)."""
        self.process.pause()
        self.paused = self.running

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self.process.resume()
        self.paused = False

    def restart(self, timeout_s: float | None = None) -> None:
        """Stop cleanly if running, then start again with the same data and ports."""
        self.stop()
        self.start(timeout_s)

    def wipe(self) -> None:
        """Kill it and lose its data (a replaced disk); :meth:`start` brings it back empty
        under the same id."""
        self.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.format()

    def wipe_and_restart(self, timeout_s: float | None = None) -> None:
        self.wipe()
        self.start(timeout_s)
