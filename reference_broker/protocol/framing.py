"""Length-prefixed frames: Kafka's ``int32 size`` + ``size`` bytes, split out of a byte stream.

Sans-I/O: the driver asks for a buffer, lets the socket write into it (asyncio's
BufferedProtocol, ``recv_into``), says how many bytes arrived and gets back complete frames;
:meth:`FrameDecoder.feed` does the same for bytes received elsewhere. A frame announcing more
than ``socket.request.max.bytes`` (or a negative size) is refused as soon as its size field is
complete, as Kafka's NetworkReceive does, so a hostile size field cannot exhaust memory.
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


# A frame as FrameDecoder hands it out: a read-only view of bytes nobody writes to afterwards.
Frame = bytes | memoryview

# Receive buffers hold at least this much: many small requests share one buffer, and an idle
# connection keeps one.
RECEIVE_BUFFER_BYTES = 64 * 1024
# Hand the socket no less room than this, rather than the last few bytes of a buffer.
MIN_RECEIVE_BYTES = 4096
# A frame up to this size gets a buffer of its exact size as soon as its size field is known,
# so the kernel writes it in place in one piece. Larger frames (up to socket.request.max.bytes)
# get buffers that double as their bytes actually arrive: a client announcing a huge frame
# without sending it cannot make the broker reserve the memory up front.
PREALLOCATE_MAX_BYTES = 8 * 1024 * 1024


class FrameDecoder:
    """Receives stream bytes into its own buffers and yields complete request frames (without
    the size prefix) as read-only memoryviews into them.

    Why buffers of its own: the first version copied every frame twice (a bytearray slice, then
    ``bytes()`` of it) after asyncio had already copied it out of the socket into a new bytes
    object, and ``feed`` was the top function of a 1 KiB produce profile. Now the kernel writes
    straight into the buffer (``recv_into``) and frames are views of it: a request's bytes are
    copied only by kio when it builds the request's fields. A buffer is never written again
    below the bytes already received, and never resized: when it is full a new one is taken
    (carrying over only an incomplete frame), so frames handed out stay valid as long as
    anyone holds them.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self._max = max_frame_bytes
        self._buffer = bytearray()
        self._start = 0  # the first byte not yet handed out in a frame
        self._end = 0  # the end of the bytes received into _buffer

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return self._end - self._start

    def get_buffer(self) -> memoryview:
        """Where the next bytes from the socket go (asyncio.BufferedProtocol.get_buffer)."""
        pending = self._end - self._start
        frame_bytes = 0  # the whole current frame, prefix included, when its size is known
        if pending >= 4:
            (size,) = _SIZE.unpack_from(self._buffer, self._start)
            if 0 <= size <= self._max:  # else buffer_updated has raised already
                frame_bytes = 4 + size
        # Room for the rest of the current frame when its size is known (however little that
        # is: a new buffer would mean copying what arrived), else a reasonable receive.
        wanted = frame_bytes - pending if frame_bytes else MIN_RECEIVE_BYTES
        if len(self._buffer) - self._end < wanted:
            capacity = max(RECEIVE_BUFFER_BYTES, pending + MIN_RECEIVE_BYTES)
            if frame_bytes:
                capacity = max(capacity, min(frame_bytes, max(PREALLOCATE_MAX_BYTES, 2 * pending)))
            fresh = bytearray(capacity)
            fresh[:pending] = memoryview(self._buffer)[self._start : self._end]
            self._buffer, self._start, self._end = fresh, 0, pending
        return memoryview(self._buffer)[self._end :]

    def buffer_updated(self, nbytes: int) -> list[Frame]:
        """``nbytes`` were written at the start of the last :meth:`get_buffer`; return every
        frame now complete. Raises FrameTooLargeError."""
        self._end += nbytes
        buf = self._buffer
        end = self._end
        position = self._start
        frames: list[Frame] = []
        view: memoryview | None = None
        while end - position >= 4:
            (size,) = _SIZE.unpack_from(buf, position)
            if size < 0 or size > self._max:
                raise FrameTooLargeError(size, self._max)
            stop = position + 4 + size
            if stop > end:
                break
            if view is None:
                # Read-only: kio's native reader refuses writable buffers ("Received writable
                # byte buffer where read-only was expected").
                view = memoryview(buf).toreadonly()
            frames.append(view[position + 4 : stop])
            position = stop
        self._start = position
        return frames

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data`` received elsewhere; return every frame now complete (a copy of ``data``
        into the decoder's buffers, then :meth:`buffer_updated`). Raises FrameTooLargeError."""
        frames: list[Frame] = []
        rest = memoryview(data)
        while rest:
            target = self.get_buffer()
            count = min(len(target), len(rest))
            target[:count] = rest[:count]
            frames += self.buffer_updated(count)
            rest = rest[count:]
        return frames


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its size."""
    return _SIZE.pack(len(payload)) + payload
