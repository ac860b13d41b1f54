"""Length-prefixed frames: Kafka's ``int32 size`` + ``size`` bytes, split out of a byte stream.

Sans-I/O: the driver feeds whatever the socket delivered and gets back complete frames. A frame
announcing more than ``socket.request.max.bytes`` (or a negative size) is refused before any of
it is buffered, as Kafka's NetworkReceive does, so a hostile size field cannot exhaust memory.
"""

from __future__ import annotations

import struct

_SIZE = struct.Struct(">i")


class FrameTooLargeError(Exception):
    """A frame whose size field is negative or exceeds the configured maximum."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"request frame of {size} bytes exceeds socket.request.max.bytes={limit}"
            if size >= 0
            else f"request frame declares a negative size {size}"
        )
        self.size = size
        self.limit = limit


class FrameDecoder:
    """Accumulates stream bytes and yields complete request frames (without the size prefix)."""

    def __init__(self, max_frame_bytes: int) -> None:
        self._max = max_frame_bytes
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every frame now complete. Raises FrameTooLargeError."""
        buf = self._buffer
        buf += data
        frames: list[bytes] = []
        position = 0
        available = len(buf)
        while available - position >= 4:
            (size,) = _SIZE.unpack_from(buf, position)
            if size < 0 or size > self._max:
                raise FrameTooLargeError(size, self._max)
            end = position + 4 + size
            if end > available:
                break
            frames.append(bytes(buf[position + 4 : end]))
            position = end
        if position:
            del buf[:position]
        return frames


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its size."""
    return _SIZE.pack(len(payload)) + payload
