"""The ``__consumer_offsets`` record format and the group-to-partition mapping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_broker.groups import log_format as fmt

# (group id, String.hashCode, partition of 50) as printed by a JVM (javac'd one-liner).
JAVA = [
    ("", 0, 0),
    ("hello", 99162322, 22),
    ("my-group", -1906497762, 12),
    ("polygenelubricants", -(2**31), 0),  # Utils.abs(Integer.MIN_VALUE) is 0
    ("\u65e5\u672c", 835047, 47),
    ("\U0001F600group", -1231696132, 32),  # a surrogate pair counts as two UTF-16 units
    ("kconform-tests", -1354557361, 11),
]

text = st.text(max_size=40)
ints32 = st.integers(-(2**31), 2**31 - 1)
ints64 = st.integers(-(2**63), 2**63 - 1)
members = st.builds(
    fmt.MemberValue, text, st.none() | text, text, text, ints32, ints32,
    st.binary(max_size=50), st.binary(max_size=50),
)


@pytest.mark.parametrize(("group", "hashcode", "partition"), JAVA)
def test_partition_for_matches_kafka(group: str, hashcode: int, partition: int) -> None:
    """A group maps to the partition Kafka's GroupMetadataManager.partitionFor gives it."""
    assert fmt.java_string_hashcode(group) == hashcode
    assert fmt.partition_for(group, 50) == partition


@given(st.builds(fmt.OffsetKey, text, text, ints32))
def test_offset_keys_round_trip(key: fmt.OffsetKey) -> None:
    """Offset-commit keys decode to what was encoded."""
    assert fmt.decode_key(fmt.encode_offset_key(key)) == key


@given(st.builds(fmt.GroupKey, text))
def test_group_keys_round_trip(key: fmt.GroupKey) -> None:
    """Group-metadata keys decode to what was encoded."""
    assert fmt.decode_key(fmt.encode_group_key(key)) == key


@given(st.builds(fmt.OffsetValue, ints64, ints32, text, ints64, st.none() | ints64))
def test_offset_values_round_trip(value: fmt.OffsetValue) -> None:
    """Committed offsets round-trip; the v1 layout (with an expiry) drops the leader epoch."""
    decoded = fmt.decode_offset_value(fmt.encode_offset_value(value))
    if value.expire_timestamp_ms is None:
        assert decoded == value
    else:
        assert decoded == fmt.OffsetValue(value.offset, -1, value.metadata,
                                      value.commit_timestamp_ms, value.expire_timestamp_ms)


@given(st.builds(fmt.GroupValue, text, ints32, st.none() | text, st.none() | text, ints64,
                 st.lists(members, max_size=4).map(tuple)))
def test_group_values_round_trip(value: fmt.GroupValue) -> None:
    """Group metadata with its members round-trips."""
    assert fmt.decode_group_value(fmt.encode_group_value(value)) == value


def test_keys_are_kafka_layouts() -> None:
    """The bytes are Kafka's OffsetCommitKey v1 and GroupMetadataKey v2, field for field."""
    assert fmt.encode_offset_key(fmt.OffsetKey("g", "t", 3)) == (
        b"\x00\x01" + b"\x00\x01g" + b"\x00\x01t" + b"\x00\x00\x00\x03"
    )
    assert fmt.encode_group_key(fmt.GroupKey("g")) == b"\x00\x02\x00\x01g"


@given(st.binary(max_size=60))
def test_garbage_is_refused_with_format_error(data: bytes) -> None:
    """Undecodable bytes raise fmt.FormatError (which the loader skips), never anything else."""
    for decode in (fmt.decode_key, fmt.decode_offset_value, fmt.decode_group_value):
        try:
            decode(data)
        except fmt.FormatError:
            pass
