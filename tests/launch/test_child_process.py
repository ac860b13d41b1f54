"""The process groups every launcher uses: a signal reaches everything the child forked, a
stop always ends it (even a paused or a SIGTERM-ignoring one), and ``catches`` tells whether a
signal has a handler. Real processes (``python -c``), no stand-ins."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from launch.child_process import ChildProcess, spawn
from launch.ports import free_port
from tests.helpers import gone_within

# A parent that forks a grandchild, prints its pid, and sleeps; SIGTERM ends it cleanly.
FORKING = ("import subprocess, sys, time\n"
           "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
           "print(child.pid, flush=True)\n"
           "time.sleep(600)\n")
# Ignores SIGTERM, so only SIGKILL ends it; says when its handler is set.
STUBBORN = ("import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGUSR1, lambda *a: None)\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n")


def _python(code: str) -> ChildProcess:
    return spawn([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=None, text=True)


def test_kill_ends_the_whole_process_group() -> None:
    child = _python(FORKING)
    try:
        assert child.popen.stdout is not None
        grandchild = int(child.popen.stdout.readline())
        assert os.getpgid(grandchild) == child.pid  # its own group, led by the child
        assert child.kill() == -signal.SIGKILL
        assert gone_within(grandchild, 10), "the grandchild outlived its group's SIGKILL"
    finally:
        child.kill()


def _stubborn() -> ChildProcess:
    child = _python(STUBBORN)
    assert child.popen.stdout is not None and child.popen.stdout.readline().strip() == "ready"
    return child


def test_stop_ends_a_paused_process_and_escalates_when_sigterm_is_ignored() -> None:
    child = _stubborn()
    try:
        child.pause()
        started = time.monotonic()
        status = child.stop(timeout_s=0.5)
        assert status == -signal.SIGKILL, status  # SIGTERM was ignored: SIGKILL after the timeout
        assert time.monotonic() - started >= 0.5
        assert not child.running
    finally:
        child.kill()


def test_catches_tells_whether_a_signal_has_a_handler() -> None:
    child = _stubborn()
    try:
        assert child.catches(signal.SIGUSR1)
        assert not child.catches(signal.SIGUSR2)
        assert not child.catches(signal.SIGTERM)  # ignored is not caught
    finally:
        child.kill()
    assert not child.catches(signal.SIGUSR1)  # gone: nothing to ask


def test_a_free_port_is_free_and_not_one_of_the_taken() -> None:
    taken = [free_port() for _ in range(3)]
    port = free_port(taken=taken)
    assert port not in taken
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing holds it
