"""Producer ids and per-partition producer state: the idempotent producer of KIP-98.

- :mod:`.state`: what each partition remembers about each producer (epoch, last five batches)
  and the checks a produced batch must pass; sans-IO, time passed in.
- :mod:`.snapshot`: the byte format of a producer-state snapshot (the log layer owns the files).
- :mod:`.id_allocator`: InitProducerId's producer ids, in blocks the controller hands out (and
  records in the metadata log) so that an id is never handed out twice, not even across restarts.

The log side of transactions (ongoing and completed transactions per partition, from
transactional batches and markers) lives in :mod:`.state` too; the transaction coordinator
(transactional ids) does not.
"""

from reference_broker.producers.id_allocator import ProducerIdBlocks
from reference_broker.producers.state import (
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    AppendOrigin,
    BatchMetadata,
    CompletedTxn,
    CoordinatorFencedError,
    Duplicate,
    InvalidProducerEpochError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    ProducerEntry,
    ProducerStateError,
    ProducerStateManager,
    UnknownProducerIdError,
)

__all__ = [
    "DEFAULT_PRODUCER_ID_EXPIRATION_MS",
    "AppendOrigin",
    "BatchMetadata",
    "CompletedTxn",
    "CoordinatorFencedError",
    "Duplicate",
    "InvalidProducerEpochError",
    "InvalidTxnStateError",
    "OutOfOrderSequenceError",
    "ProducerEntry",
    "ProducerIdBlocks",
    "ProducerStateError",
    "ProducerStateManager",
    "UnknownProducerIdError",
]
