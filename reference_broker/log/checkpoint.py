"""Small durable files holding one offset each (log start offset, recovery point).

Kafka keeps ``log-start-offset-checkpoint`` and ``recovery-point-offset-checkpoint`` per log
directory, listing every partition; here each partition directory holds its own, in the same
spirit: a version line, then the offset. They are replaced atomically (write a temporary file,
fsync it, rename it over the old one, fsync the directory), so a crash leaves either the old or
the new value and never a torn one.
"""

from __future__ import annotations

import os
from pathlib import Path

from reference_broker.log.errors import LogError
from reference_broker.log.files import TEMPORARY_SUFFIX, fsync_directory

_VERSION = "0"


def read_offset(path: Path) -> int | None:
    """The offset stored at ``path``, or None when the file does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    lines = text.split("\n")
    if len(lines) < 2 or lines[0] != _VERSION or not lines[1].lstrip("-").isdigit():
        raise LogError(f"malformed checkpoint file {path}: {text[:80]!r}")
    return int(lines[1])


def write_offset_unsynced(path: Path, offset: int) -> bool:
    """Replace the offset at ``path`` without fsync (for checkpoints rewritten every few seconds,
    where an older value after a power loss is safe); False if the directory is gone."""
    if not path.parent.exists():
        return False
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    temporary.write_text(f"{_VERSION}\n{offset}\n")
    os.replace(temporary, path)
    return True


def write_offset(path: Path, offset: int) -> None:
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    with open(temporary, "w") as file:
        file.write(f"{_VERSION}\n{offset}\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)
