"""Transaction markers as control batches (KIP-98; Kafka's EndTransactionMarker and
ControlRecordType): the bytes written and their parsing."""

from __future__ import annotations

import struct

import pytest

from reference_broker.records import (
    ControlType,
    EndTransactionMarker,
    InvalidRecordError,
    Record,
    build_batch,
    build_control_batch,
    iter_records,
    parse_control_batch,
    parse_header,
    validate_batches,
)


@pytest.mark.parametrize("control_type", list(ControlType))
def test_a_marker_round_trips(control_type: ControlType) -> None:
    marker = EndTransactionMarker(control_type, 17)
    data = build_control_batch(42, 3, marker, 1_000, base_offset=9)
    (header,) = validate_batches(data)
    assert (header.is_control, header.is_transactional) == (True, True)
    assert header.attributes == 0x30
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (42, 3, -1)
    assert (header.base_offset, header.record_count) == (9, 1)
    assert parse_control_batch(data, header) == marker
    # Kafka's layout: key = version int16 0 + type int16, value = version int16 0 + epoch int32.
    (record,) = iter_records(data, header)
    assert record.key == struct.pack(">hh", 0, int(control_type))
    assert record.value == struct.pack(">hi", 0, 17)
    assert marker.is_abort is (control_type is ControlType.ABORT)


def control(key: bytes | None, value: bytes | None) -> bytes:
    return build_batch([Record(0, 1, key, value)], base_offset=0, attributes=0x30,
                       producer_id=1, producer_epoch=0)


@pytest.mark.parametrize(
    "data",
    [
        control(struct.pack(">hh", 0, 5), struct.pack(">hi", 0, 1)),  # unknown type
        control(struct.pack(">hh", 1, 0), struct.pack(">hi", 0, 1)),  # unknown key version
        control(b"\x00", struct.pack(">hi", 0, 1)),  # short key
        control(struct.pack(">hh", 0, 0), None),  # no value
        control(struct.pack(">hh", 0, 0), struct.pack(">hi", 3, 1)),  # unknown value version
    ],
    ids=["type", "key-version", "short-key", "no-value", "value-version"],
)
def test_malformed_control_records_are_invalid_record(data: bytes) -> None:
    with pytest.raises(InvalidRecordError):
        parse_control_batch(data, parse_header(data))


def test_a_data_batch_is_not_a_control_batch() -> None:
    data = build_batch([Record(0, 1, None, b"v")], base_offset=0)
    with pytest.raises(InvalidRecordError):
        parse_control_batch(data, parse_header(data))


def test_an_emptied_control_batch_has_no_marker() -> None:
    data = build_batch([], base_offset=0, attributes=0x30, producer_id=1, producer_epoch=0)
    assert parse_control_batch(data, parse_header(data)) is None
