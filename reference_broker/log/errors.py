"""Errors the partition log raises, each matching the Kafka error code the broker answers with."""

from __future__ import annotations

from typing import ClassVar

from kio.schema.errors import ErrorCode


class LogError(Exception):
    """Base class for failures of the partition log layer (KAFKA_STORAGE_ERROR unless refined)."""

    error_code: ClassVar[ErrorCode] = ErrorCode.kafka_storage_error


class OffsetOutOfRangeError(LogError):
    """A fetch or DeleteRecords offset outside ``[log_start_offset, log_end_offset]``."""

    error_code = ErrorCode.offset_out_of_range

    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int) -> None:
        super().__init__(
            f"offset {offset} is outside the log's range "
            f"[{log_start_offset}, {log_end_offset}]"
        )
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class RecordListTooLargeError(LogError):
    """A produced record set larger than a whole segment (segment.bytes) can ever hold."""

    error_code = ErrorCode.record_list_too_large


class RecordTooLargeError(LogError):
    """A single batch larger than max.message.bytes (Kafka's MESSAGE_TOO_LARGE)."""

    error_code = ErrorCode.message_too_large


class CorruptIndexError(LogError):
    """An index file that is missing or disagrees with its segment; recovery rebuilds it."""
