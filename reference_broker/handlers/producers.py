"""InitProducerId: producer ids for idempotent producers (KIP-98).

Kafka's KafkaApis.handleInitProducerIdRequest and TransactionCoordinator.handleInitProducerId:

* no transactional id -> a new producer id with epoch 0, every time (from the block of ids the
  controller gave this broker, KIP-730). An idempotent producer that
  sends its current id and epoch (v3+, KIP-360, to recover from a sequence error) also gets a
  new id: Kafka's coordinator bumps epochs only for transactional ids.
* a producer id without an epoch, or an epoch without a producer id -> INVALID_REQUEST.
* a transactional id -> the transaction coordinator's answer
  (:mod:`reference_broker.handlers.transactions`).
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.handlers.context import Later, RequestContext
from reference_broker.handlers.transactions import init_transactional_producer_id

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1


def _response(error: ErrorCode, producer_id: int = NO_PRODUCER_ID,
              producer_epoch: int = NO_PRODUCER_EPOCH) -> dict[str, Any]:
    return {
        "throttle_time": 0,
        "error_code": error,
        "producer_id": producer_id,
        "producer_epoch": producer_epoch,
    }


def handle_init_producer_id(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    producer_id = getattr(request, "producer_id", NO_PRODUCER_ID)
    producer_epoch = getattr(request, "producer_epoch", NO_PRODUCER_EPOCH)
    if (producer_id == NO_PRODUCER_ID) != (producer_epoch == NO_PRODUCER_EPOCH):
        return _response(ErrorCode.invalid_request)
    if request.transactional_id is not None:
        return init_transactional_producer_id(broker, ctx, request, now_ms)
    # Ids come in blocks from the controller (KIP-730); when this broker's block is used up the
    # answer waits for the next one. No block (controller unreachable): a retriable error.
    later = Later(lambda allocated: _response(ErrorCode.none, allocated, 0))
    broker.allocate_producer_id(
        lambda allocated: later.resolve(_response(ErrorCode.coordinator_not_available))
        if allocated is None else later.callback(allocated),
        now_ms,
    )
    return later.response()
