"""Request handlers, one module per family of APIs, and the table the driver dispatches on.

A handler takes the broker, the request context, the decoded request body and the current time,
and returns the response as a plain dict (turned into the negotiated version's kio class by
:func:`reference_broker.protocol.codec.build_response`), or None when Kafka sends no response.
Fetch is not in the table: it may wait, so the driver runs it itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reference_broker.broker import Broker
from reference_broker.handlers.configs import (
    handle_describe_configs,
    handle_incremental_alter_configs,
)
from reference_broker.handlers.context import RequestContext
from reference_broker.handlers.groups import (
    handle_delete_groups,
    handle_describe_groups,
    handle_heartbeat,
    handle_join_group,
    handle_leave_group,
    handle_list_groups,
    handle_offset_commit,
    handle_offset_delete,
    handle_offset_fetch,
    handle_sync_group,
    handle_txn_offset_commit,
)
from reference_broker.handlers.leader_epochs import handle_offset_for_leader_epoch
from reference_broker.handlers.metadata import (
    handle_api_versions,
    handle_find_coordinator,
    handle_metadata,
)
from reference_broker.handlers.offsets import handle_delete_records, handle_list_offsets
from reference_broker.handlers.produce import handle_produce
from reference_broker.handlers.producers import handle_init_producer_id
from reference_broker.handlers.topics import (
    handle_create_partitions,
    handle_create_topics,
    handle_delete_topics,
)
from reference_broker.handlers.transactions import (
    handle_add_offsets_to_txn,
    handle_add_partitions_to_txn,
    handle_describe_producers,
    handle_describe_transactions,
    handle_end_txn,
    handle_list_transactions,
)
from reference_broker.handlers.txn_markers import handle_write_txn_markers
from reference_broker.protocol.api_keys import ApiKey

Handler = Callable[[Broker, RequestContext, Any, int], Any]

FETCH = int(ApiKey.FETCH)  # a plain int: compared on every request
HANDLERS: dict[int, Handler] = {
    0: handle_produce,
    2: handle_list_offsets,
    3: handle_metadata,
    8: handle_offset_commit,
    9: handle_offset_fetch,
    10: handle_find_coordinator,
    11: handle_join_group,
    12: handle_heartbeat,
    13: handle_leave_group,
    14: handle_sync_group,
    15: handle_describe_groups,
    16: handle_list_groups,
    18: handle_api_versions,
    19: handle_create_topics,
    20: handle_delete_topics,
    21: handle_delete_records,
    22: handle_init_producer_id,
    23: handle_offset_for_leader_epoch,
    24: handle_add_partitions_to_txn,
    25: handle_add_offsets_to_txn,
    26: handle_end_txn,
    27: handle_write_txn_markers,
    28: handle_txn_offset_commit,
    32: handle_describe_configs,
    37: handle_create_partitions,
    42: handle_delete_groups,
    44: handle_incremental_alter_configs,
    47: handle_offset_delete,
    61: handle_describe_producers,
    65: handle_describe_transactions,
    66: handle_list_transactions,
}
