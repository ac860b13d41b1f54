"""Kafka's upper-case error names, the one way the harness names an error (histories, reports,
checks, the wire session, every client): ``NOT_LEADER_OR_FOLLOWER``, ``NONE`` for success
(docs/architecture.md, principle 2)."""

from __future__ import annotations

from typing import SupportsInt

from kio.schema.errors import ErrorCode


def error_name(code: SupportsInt) -> str:
    """Kafka's name of a protocol error code; ``UNKNOWN_ERROR_CODE_<n>`` for a code Kafka has not
    defined (a broker may answer one)."""
    try:
        return ErrorCode(int(code)).name.upper()
    except ValueError:
        return f"UNKNOWN_ERROR_CODE_{int(code)}"
