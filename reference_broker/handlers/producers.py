"""InitProducerId: producer ids for idempotent producers (KIP-98), no transactions yet.

Kafka's KafkaApis.handleInitProducerIdRequest and TransactionCoordinator.handleInitProducerId:

* no transactional id -> a new producer id with epoch 0, every time. An idempotent producer that
  sends its current id and epoch (v3+, KIP-360, to recover from a sequence error) also gets a
  new id: Kafka's coordinator bumps epochs only for transactional ids.
* a producer id without an epoch, or an epoch without a producer id -> INVALID_REQUEST.
* a transactional id -> COORDINATOR_NOT_AVAILABLE. The reference broker has no transaction
  coordinator yet; this is the retriable error Kafka gives while no coordinator can serve the
  id, so a transactional client keeps retrying until its own timeout (max.block.ms /
  transaction.timeout.ms) and then reports it, rather than being told something untrue such as
  an authorization failure.
"""

from __future__ import annotations

from typing import Any

from reference_broker.broker import Broker
from reference_broker.handlers.context import RequestContext

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1


def _response(error: str, producer_id: int = NO_PRODUCER_ID,
              producer_epoch: int = NO_PRODUCER_EPOCH) -> dict[str, Any]:
    return {
        "throttle_time": 0,
        "error_code": error,
        "producer_id": producer_id,
        "producer_epoch": producer_epoch,
    }


def handle_init_producer_id(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    if request.transactional_id is not None:
        return _response("coordinator_not_available")
    producer_id = getattr(request, "producer_id", NO_PRODUCER_ID)
    producer_epoch = getattr(request, "producer_epoch", NO_PRODUCER_EPOCH)
    if (producer_id == NO_PRODUCER_ID) != (producer_epoch == NO_PRODUCER_EPOCH):
        return _response("invalid_request")
    return _response("none", broker.producer_ids.allocate(), 0)
