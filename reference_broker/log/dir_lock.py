"""One process per data directory: the lock Kafka takes on each log directory.

Two brokers on one ``log.dirs`` would both append to the same segment files and each believe
its offsets, so records end up twice at one offset and the clean-shutdown marker of one hides
the other's unfinished writes. Kafka refuses to start on a log directory another process holds
(a ``.lock`` file it keeps locked while it runs); this does the same with ``flock``, which the
kernel releases when the process ends however it ends (SIGKILL included), so a crashed broker
never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from reference_broker.config import ConfigError

LOCK_FILE = ".lock"  # Kafka's name


class LogDirInUseError(ConfigError):
    """Another running process holds the data directory."""


@contextlib.contextmanager
def locked_log_dir(path: str) -> Iterator[Path]:
    """Create ``path`` if needed and hold its lock while the context runs. ConfigError (naming
    ``log.dirs``) when it is not a usable directory, LogDirInUseError when another process
    holds it."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"log.dirs={path} is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"log.dirs={path} cannot be used: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LogDirInUseError(
                f"log.dirs={path} is in use by another running broker (process {holder}); two brokers "
                "on one data directory corrupt it: give each its own log.dirs") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield directory
    finally:
        os.close(fd)  # releases the lock; the file stays, as Kafka's does
