"""The API keys and version ranges this broker speaks, answered in ApiVersions.

The floors follow kio, which follows Kafka 4.x (Produce 3+, Fetch 4+, ...). Ceilings are the
versions the reference broker implements completely; clients negotiate ``min(theirs, ours)``.
An API missing here is answered by closing the connection (after logging the peer), which is
what Kafka does for an API key it does not know.

Transaction protocol version 2 (KIP-890 part 2) has request versions of its own: Produce 12
(the partition leader adds the partition to the transaction), AddPartitionsToTxn 5 (the
leader's request for that), EndTxn 5 (the epoch is bumped per transaction) and TxnOffsetCommit
5 (the group coordinator adds the offsets partition). :func:`offered_versions` offers them only
when the broker's ``kconform.transaction.version`` is 2. Kafka 4.x offers them at every feature
level and leaves the choice to the client, which reads the finalized ``transaction.version``
feature (KIP-1022; :mod:`reference_broker.protocol.features`); the reference broker withholds
them below 2, so that a client that ignores the feature cannot mix the two protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kio.schema.errors import ErrorCode

# api_key: (min_version, max_version)
API_VERSIONS: Final[dict[int, tuple[int, int]]] = {
    0: (3, 12),  # Produce (12: transaction version 2, KIP-890; 13 switches to topic ids)
    1: (4, 16),  # Fetch (13+ addresses topics by id)
    2: (1, 11),  # ListOffsets
    3: (0, 13),  # Metadata
    8: (2, 10),  # OffsetCommit (10 addresses topics by id)
    9: (1, 10),  # OffsetFetch (8 batches groups, 10 addresses topics by id)
    10: (0, 6),  # FindCoordinator: groups and transactional ids
    11: (0, 9),  # JoinGroup (4 MEMBER_ID_REQUIRED, 5 static members, 9 skip_assignment)
    12: (0, 4),  # Heartbeat
    13: (0, 5),  # LeaveGroup (3 batches members)
    14: (0, 5),  # SyncGroup
    15: (0, 6),  # DescribeGroups
    16: (0, 5),  # ListGroups (4 state filter, 5 type filter)
    18: (0, 4),  # ApiVersions
    19: (2, 7),  # CreateTopics
    20: (1, 6),  # DeleteTopics
    21: (0, 2),  # DeleteRecords
    22: (0, 5),  # InitProducerId: idempotent and transactional; 6 adds two-phase commit (KIP-939)
    23: (2, 4),  # OffsetForLeaderEpoch (followers after a leader change; consumers, KIP-320)
    # Transactions (KIP-98).
    # AddPartitionsToTxn (4: batched, verify_only, from brokers, KIP-890 part 1; 5: a leader's
    # add for a Produce v12, KIP-890 part 2)
    24: (0, 5),
    25: (0, 4),  # AddOffsetsToTxn
    26: (0, 5),  # EndTxn (5 answers the bumped epoch, KIP-890 part 2)
    27: (1, 2),  # WriteTxnMarkers (Kafka 4.x: 1-2; 2 adds transaction_version, KIP-890)
    28: (0, 5),  # TxnOffsetCommit (3 adds the member, KIP-447; 5 adds the partition, KIP-890)
    32: (1, 4),  # DescribeConfigs
    37: (0, 3),  # CreatePartitions
    42: (0, 2),  # DeleteGroups
    44: (0, 1),  # IncrementalAlterConfigs
    47: (0, 0),  # OffsetDelete
    61: (0, 0),  # DescribeProducers (KIP-664)
    65: (0, 0),  # DescribeTransactions (KIP-664)
    66: (0, 1),  # ListTransactions (KIP-664; 1 adds the duration filter, KIP-994)
}

API_VERSIONS_KEY: Final = 18

# The ceilings below transaction version 2: the last version of each API before KIP-890 part 2
# (Kafka's ProduceRequest.LAST_STABLE_VERSION_BEFORE_TRANSACTION_V2 is 11; EndTxn and
# AddPartitionsToTxn 5 and TxnOffsetCommit 5 came with it).
TRANSACTION_V1_CEILINGS: Final[dict[int, int]] = {0: 11, 24: 4, 26: 4, 28: 4}
TRANSACTION_V2: Final = 2


def offered_versions(transaction_version: int) -> dict[int, tuple[int, int]]:
    """The API versions a broker whose ``transaction.version`` is ``transaction_version`` offers:
    :data:`API_VERSIONS`, without the versions of transaction version 2 below 2."""
    if transaction_version >= TRANSACTION_V2:
        return dict(API_VERSIONS)
    return {key: (low, min(high, TRANSACTION_V1_CEILINGS.get(key, high)))
            for key, (low, high) in API_VERSIONS.items()}

# The APIs a controller (process.roles=controller) serves on its controller listener, and the
# versions brokers send them at (the highest here: both ends are ours). Fetch reads the metadata
# log, topic __cluster_metadata, by name (v4-v12).
CONTROLLER_API_VERSIONS: Final[dict[int, tuple[int, int]]] = {
    1: (4, 12),  # Fetch of __cluster_metadata (brokers long-poll it)
    18: (0, 4),  # ApiVersions
    19: (2, 7),  # CreateTopics (forwarded by brokers)
    20: (1, 6),  # DeleteTopics (forwarded)
    32: (1, 4),  # DescribeConfigs (topics)
    37: (0, 3),  # CreatePartitions (forwarded)
    44: (0, 1),  # IncrementalAlterConfigs (forwarded)
    56: (2, 3),  # AlterPartition (KIP-497): ISR changes from partition leaders
    62: (0, 4),  # BrokerRegistration (KIP-631)
    63: (0, 1),  # BrokerHeartbeat (KIP-631)
    64: (0, 0),  # UnregisterBroker: answered UNSUPPORTED_VERSION (no decommissioning)
    67: (0, 0),  # AllocateProducerIds (KIP-730)
}


def api_versions_body(versions: Mapping[int, tuple[int, int]], error: ErrorCode = ErrorCode.none) -> dict[str, Any]:
    """An ApiVersions response listing ``versions`` (the same body for every version)."""
    return {
        "error_code": error,
        "api_keys": [
            {"api_key": key, "min_version": low, "max_version": high}
            for key, (low, high) in sorted(versions.items())
        ],
    }
