"""The broker's malloc tuning takes effect where glibc is the C library."""

from __future__ import annotations

import platform

import pytest

from reference_broker.allocator import tune_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_glibc_accepts_the_thresholds() -> None:
    """mallopt accepts both thresholds (it returns 0 for a parameter it refuses)."""
    assert tune_allocator() is True
