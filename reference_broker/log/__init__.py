"""The partition log layer: segmented, indexed, durable logs with retention and compaction."""

from reference_broker.log.cleaner import CleanerStats
from reference_broker.log.config import LogConfig
from reference_broker.log.errors import (
    LogError,
    OffsetOutOfRangeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from reference_broker.log.partition_log import AppendResult, PartitionLog, ReadResult

__all__ = [
    "AppendResult",
    "CleanerStats",
    "LogConfig",
    "LogError",
    "OffsetOutOfRangeError",
    "PartitionLog",
    "ReadResult",
    "RecordListTooLargeError",
    "RecordTooLargeError",
]
