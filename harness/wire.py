"""The harness's protocol-level client: the same precise asyncio Kafka client brokers use.

Real client libraries hide what the broker said: they retry, negotiate, and map error codes to
exceptions. Conformance checks need the raw answer, so they send requests with
:class:`WireClient` and read the exact error codes and offsets. It is the reference broker's own
inter-broker client (kio plumbing only, no broker logic), re-exported here for the harness.
"""

from reference_broker.drivers.wire_client import (
    WireClient,
    WireError,
    decode_response,
    encode_request,
)
from reference_broker.protocol.codec import build, request_class, response_class

__all__ = [
    "WireClient",
    "WireError",
    "build",
    "decode_response",
    "encode_request",
    "request_class",
    "response_class",
]
