"""The features a broker announces in ApiVersions v3+ (KIP-584), which clients read to choose
a protocol.

Only ``transaction.version`` is announced (KIP-890, KIP-1022): SupportedFeatures 0..2, and
FinalizedFeatures at the broker's ``kconform.transaction.version`` (a level of 0 is not
finalized, as in Kafka, where setting a feature to 0 removes it). The Java client (3.9+) reads
the finalized level with the highest FinalizedFeaturesEpoch of the brokers it knows, and speaks
transaction version 2 when it is 2 or more (TransactionManager.isTransactionV2Enabled): Produce
12 without AddPartitionsToTxn, TxnOffsetCommit 5 without AddOffsetsToTxn, EndTxn 5. The epoch
must be 0 or more for a client to take the features at all (-1 means unknown); it is the offset
of the broker's metadata image, as in KRaft, where features are metadata records.

Other features are left out on purpose: ``metadata.version`` and ``kraft.version`` describe
Kafka's own metadata log, which clients only show (Admin.describeFeatures), and ``group.version``
1+ would announce the consumer group protocol of KIP-848, which this broker does not speak.

ApiVersions requests below v4 get no supported feature whose minimum is 0 (KIP-1022: older
clients refuse such a range); FinalizedFeatures are answered to every v3+ request.
"""

from __future__ import annotations

from typing import Any, Final

TRANSACTION_VERSION: Final = "transaction.version"
SUPPORTED_TRANSACTION_VERSIONS: Final = (0, 2)  # TransactionVersion TV_0..TV_2
FEATURES_FROM_VERSION: Final = 3  # ApiVersions v3: the features are tagged fields
MIN_VERSION_ZERO_FROM_VERSION: Final = 4  # KIP-1022


def features_body(api_version: int, transaction_version: int, metadata_offset: int) -> dict[str, Any]:
    """The feature fields of an ApiVersions response of ``api_version`` from a broker at
    ``transaction_version`` whose metadata image is at ``metadata_offset``."""
    if api_version < FEATURES_FROM_VERSION:
        return {}
    low, high = SUPPORTED_TRANSACTION_VERSIONS
    supported = ([] if api_version < MIN_VERSION_ZERO_FROM_VERSION and low == 0
                 else [{"name": TRANSACTION_VERSION, "min_version": low, "max_version": high}])
    finalized = ([{"name": TRANSACTION_VERSION, "min_version_level": transaction_version,
                   "max_version_level": transaction_version}] if transaction_version > 0 else [])
    return {"supported_features": supported, "finalized_features_epoch": max(metadata_offset, 0),
            "finalized_features": finalized}
