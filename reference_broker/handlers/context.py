"""What a handler knows about the request besides its body: who sent it and on which listener."""

from __future__ import annotations

import attrs


@attrs.frozen(slots=True)
class RequestContext:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    listener: str  # the listener name the request arrived on, for advertised addresses
    peer: str  # "host:port" of the client, for logs


class CloseConnection(Exception):
    """Raised by a handler when Kafka would close the connection instead of answering
    (for instance a failed acks=0 produce, so the producer notices and refreshes metadata)."""
