"""The API keys and version ranges this broker speaks, answered in ApiVersions.

The floors follow kio, which follows Kafka 4.x (Produce 3+, Fetch 4+, ...). Ceilings are the
versions the reference broker implements completely; clients negotiate ``min(theirs, ours)``.
An API missing here is answered by closing the connection (after logging the peer), which is
what Kafka does for an API key it does not know.
"""

from __future__ import annotations

from typing import Final

# api_key: (min_version, max_version)
API_VERSIONS: Final[dict[int, tuple[int, int]]] = {
    0: (3, 12),  # Produce (13 switches to topic ids)
    1: (4, 16),  # Fetch (13+ addresses topics by id)
    2: (1, 11),  # ListOffsets
    3: (0, 13),  # Metadata
    10: (0, 6),  # FindCoordinator: COORDINATOR_NOT_AVAILABLE until groups exist
    18: (0, 4),  # ApiVersions
    19: (2, 7),  # CreateTopics
    20: (1, 6),  # DeleteTopics
    21: (0, 2),  # DeleteRecords
    32: (1, 4),  # DescribeConfigs
    37: (0, 3),  # CreatePartitions
    44: (0, 1),  # IncrementalAlterConfigs
}

API_VERSIONS_KEY: Final = 18
