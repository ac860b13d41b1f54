"""A child process in its own process group, and the signals a test harness sends it.

Every real component kconform launches (reference brokers, Tansu, later Apache Kafka and
Toxiproxy) is started through :func:`spawn`, so stopping it reaches everything it forked, and a
stop always ends it: SIGCONT first (a paused process cannot act on SIGTERM), SIGTERM, then
SIGKILL if it does not exit in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any, Self


class ChildProcess:
    """A running child started by :func:`spawn`."""

    def __init__(self, popen: subprocess.Popen[Any]) -> None:
        self.popen = popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def catches(self, sig: signal.Signals) -> bool:
        """Whether the process has a handler for ``sig`` now (Linux: ``SigCgt`` in
        /proc/<pid>/status); False when that cannot be read. Sending a signal nobody catches
        may end the process (SIGUSR1's default action)."""
        try:
            status = open(f"/proc/{self.pid}/status").read()
        except OSError:
            return False
        for line in status.splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
        return False

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the whole process group, if it is still running."""
        if self.running:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> int:
        """SIGKILL the process group, as a crash or power cut would end it; its exit status."""
        self.signal(signal.SIGKILL)
        return self.popen.wait()

    def stop(self, timeout_s: float) -> int:
        """SIGTERM and wait up to ``timeout_s`` for a clean exit, then SIGKILL; its exit status."""
        if self.running:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()


def spawn(
    command: Sequence[str],
    *,
    stdout: int | IO[Any] | None,
    stderr: int | IO[Any] | None,
    text: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
) -> ChildProcess:
    """Start ``command`` in a new session (its own process group), stdin closed."""
    popen = subprocess.Popen(
        list(command), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, text=text,
        cwd=cwd, env=env, start_new_session=True,
    )
    return ChildProcess(popen)


class Supervisor:
    """Base of the launchers (broker, Tansu, ...): process control over ``self._child``.

    Subclasses set ``self._child`` when they start the process and implement :meth:`_release`
    to close whatever they opened for it (pipes, log files).
    """

    _child: ChildProcess | None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM and wait for a clean exit; SIGKILL if it does not come. The exit status."""
        if self._child is None:
            return None
        self._child.stop(timeout_s)
        return self._reap()

    def terminate(self) -> None:
        """Ask for a clean exit (SIGCONT, SIGTERM) without waiting for it; :meth:`stop` waits."""
        if self._child is not None:
            self._child.signal(signal.SIGCONT)
            self._child.signal(signal.SIGTERM)

    def kill(self) -> int | None:
        """SIGKILL the whole process group, as a crash or power cut would end it."""
        if self._child is None:
            return None
        self._child.kill()
        return self._reap()

    def pause(self) -> None:
        """SIGSTOP: the process stays, silent, holding its sockets open."""
        if self._child is not None:
            self._child.pause()

    def resume(self) -> None:
        if self._child is not None:
            self._child.resume()

    def _reap(self) -> int | None:
        assert self._child is not None
        code = self._child.popen.returncode
        self._release()
        self._child = None
        return code

    def _release(self) -> None:
        """Close what was opened for the child that just ended."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        """Kill the process and remove whatever the launcher created for it."""
        self.kill()

    def __enter__(self) -> Self:
        if not self.running:
            try:
                self.start()
            except BaseException:  # also Ctrl-C: never leave a half-started process behind
                self.close()
                raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
