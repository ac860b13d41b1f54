"""The ``__transaction_state`` record format and the transactional-id-to-partition mapping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_broker.transactions import log_format as fmt
from reference_broker.transactions.state import TransactionState

text = st.text(max_size=40)
ints16 = st.integers(-(2**15), 2**15 - 1)
ints32 = st.integers(-(2**31), 2**31 - 1)
ints64 = st.integers(-(2**63), 2**63 - 1)
partitions = st.lists(st.tuples(text, st.lists(ints32, max_size=5).map(tuple)), max_size=4).map(tuple)
values = st.builds(
    fmt.TxnValue, ints64, ints16, ints32, st.sampled_from(TransactionState),
    st.none() | partitions, ints64, ints64, ints64, ints64, ints16,
)


def test_partition_for_is_the_group_coordinators_function() -> None:
    """Kafka's Utils.abs(String.hashCode) % 50: values a JVM printed for the group ids of
    tests/reference_broker/groups/test_log_format.py."""
    assert fmt.partition_for("hello") == 22
    assert fmt.partition_for("polygenelubricants") == 0  # Utils.abs(Integer.MIN_VALUE) is 0
    assert fmt.partition_for("kconform-tests", 50) == 11
    assert fmt.partition_for("hello", 7) == 99162322 % 7


@given(text)
def test_keys_round_trip(transactional_id: str) -> None:
    assert fmt.decode_key(fmt.encode_key(transactional_id)) == transactional_id


@given(values)
def test_version_1_values_round_trip(value: fmt.TxnValue) -> None:
    """The flexible version keeps every field, the tagged ones included."""
    assert fmt.decode_value(fmt.encode_value(value, 1)) == value


@given(values)
def test_version_0_values_round_trip_without_the_tagged_fields(value: fmt.TxnValue) -> None:
    """Version 0 has no PreviousProducerId, NextProducerId or ClientTransactionVersion: they
    read back as their defaults."""
    expected = fmt.TxnValue(value.producer_id, value.producer_epoch, value.timeout_ms, value.state,
                            value.partitions, value.last_update_ms, value.start_ms)
    assert fmt.decode_value(fmt.encode_value(value, 0)) == expected


def test_key_bytes() -> None:
    """TransactionLogKey v0: int16 version 0, then the id as an int16-length string."""
    assert fmt.encode_key("txn") == bytes.fromhex("0000" "0003" "74786e")


ONGOING = fmt.TxnValue(1000, 2, 60_000, TransactionState.ONGOING, (("t", (0, 1)),), 5, 3)


def test_value_bytes_of_version_0() -> None:
    """TransactionLogValue v0, field by field as its JSON schema orders them."""
    assert fmt.encode_value(ONGOING, 0) == bytes.fromhex(
        "0000"  # version
        "00000000000003e8"  # ProducerId
        "0002"  # ProducerEpoch
        "0000ea60"  # TransactionTimeoutMs
        "01"  # TransactionStatus: Ongoing
        "00000001" "0001" "74" "00000002" "00000000" "00000001"  # one topic "t", [0, 1]
        "0000000000000005"  # TransactionLastUpdateTimestampMs
        "0000000000000003"  # TransactionStartTimestampMs
    )


def test_value_bytes_of_version_1_with_tagged_fields() -> None:
    """TransactionLogValue v1: compact lengths (plus one), a tagged-field section after each
    topic entry, then the record's tagged fields in tag order, only those off their default."""
    value = fmt.TxnValue(1000, 2, 60_000, TransactionState.ONGOING, (("t", (0, 1)),), 5, 3,
                         previous_producer_id=999, client_transaction_version=2)
    assert fmt.encode_value(value, 1) == bytes.fromhex(
        "0001" "00000000000003e8" "0002" "0000ea60" "01"
        "02" "02" "74" "03" "00000000" "00000001" "00"  # one topic "t", [0, 1], no tags
        "0000000000000005" "0000000000000003"
        "02"  # two tagged fields
        "00" "08" "00000000000003e7"  # tag 0 PreviousProducerId = 999
        "02" "02" "0002"  # tag 2 ClientTransactionVersion = 2 (tag 1 is at its default)
    )


def test_empty_values_have_null_partitions() -> None:
    """Kafka writes Empty with a null partition array, and ignores partitions when reading one."""
    empty = fmt.TxnValue(7, 0, 100, TransactionState.EMPTY, None, 1, -1)
    assert fmt.encode_value(empty, 1) == bytes.fromhex(
        "0001" "0000000000000007" "0000" "00000064" "00" "00"
        "0000000000000001" "ffffffffffffffff" "00"
    )
    assert fmt.encode_value(empty, 0)[17:21] == bytes.fromhex("ffffffff")
    assert fmt.TxnValue(7, 0, 100, TransactionState.EMPTY, (("t", (1,)),), 1, -1).topic_partitions() == set()


@pytest.mark.parametrize("data", [
    b"", bytes.fromhex("0002"), fmt.encode_value(ONGOING, 0)[:-1], fmt.encode_value(ONGOING, 0) + b"\x00",
    fmt.encode_value(ONGOING, 0)[:16] + b"\x09" + fmt.encode_value(ONGOING, 0)[17:],  # state 9
    fmt.encode_value(ONGOING, 0)[:17] + bytes.fromhex("7fffffff"),  # a count past the end
])
def test_bad_values_are_format_errors(data: bytes) -> None:
    with pytest.raises(fmt.FormatError):
        fmt.decode_value(data)


@pytest.mark.parametrize("data", [b"", bytes.fromhex("0001" "0000"), fmt.encode_key("x") + b"!"])
def test_bad_keys_are_format_errors(data: bytes) -> None:
    with pytest.raises(fmt.FormatError):
        fmt.decode_key(data)
