"""A data directory belongs to one broker process at a time (Kafka's log directory lock), and a
broker that cannot start says which setting is wrong."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from launch.broker_process import BrokerProcess


def _start(*overrides: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reference_broker"]
    for override in overrides:
        command += ["--override", override]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_second_broker_on_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    with BrokerProcess(data_dir=tmp_path) as first:
        data = first.data_dir / "data"
        second = _start(f"log.dirs={data}", "listeners=PLAINTEXT://127.0.0.1:0")
        assert second.returncode == 2, second.stderr
        assert f"log.dirs={data} is in use by another running broker (process {first.pid})" in second.stderr
        assert (data / ".lock").exists()
        first.kill()  # the kernel drops the lock of a killed process: no stale lock
    with BrokerProcess(data_dir=tmp_path) as again:
        assert again.pid is not None


def test_a_file_as_log_dirs_and_a_port_in_use_are_named(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    refused = _start(f"log.dirs={a_file}", "listeners=PLAINTEXT://127.0.0.1:0")
    assert refused.returncode == 2 and f"log.dirs={a_file} is a file, not a directory" in refused.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _start(f"log.dirs={tmp_path / 'd'}", f"listeners=PLAINTEXT://127.0.0.1:{port}")
    assert busy.returncode == 2 and "port is already in use" in busy.stderr, busy.stderr
    assert f"listeners=PLAINTEXT://127.0.0.1:{port}" in busy.stderr
