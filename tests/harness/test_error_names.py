"""The harness names errors as Kafka does, and a code Kafka never defined still gets a name."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from harness.error_names import error_name


def test_kafka_names_in_upper_case() -> None:
    assert error_name(0) == "NONE"
    assert error_name(ErrorCode.not_leader_or_follower) == "NOT_LEADER_OR_FOLLOWER"
    assert error_name(-1) == "UNKNOWN_SERVER_ERROR"


def test_an_undefined_code_is_named_by_its_number() -> None:
    assert error_name(32767) == "UNKNOWN_ERROR_CODE_32767"
