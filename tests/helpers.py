"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import shutil

import pytest


def require_kcat() -> str:
    """The kcat binary, or a visible skip saying why it is missing."""
    path = shutil.which("kcat")
    if path is None:
        pytest.skip("kcat is not installed (scripts/setup installs the Debian package as root)")
    return path
