"""FrameDecoder: Kafka's ``int32 size`` framing split out of a byte stream, sans I/O."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_broker.protocol.codec import decode_request
from reference_broker.protocol.framing import (
    PREALLOCATE_MAX_BYTES,
    FrameDecoder,
    FrameTooLargeError,
    frame,
)

LIMIT = 1024


def test_frame_prefixes_the_payload_with_its_big_endian_size() -> None:
    """frame() writes the 4-byte big-endian size, then the payload."""
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"") == b"\x00\x00\x00\x00"


def test_a_frame_split_across_feeds_comes_out_once_complete() -> None:
    """Bytes fed one at a time (size prefix included) yield nothing until the frame is whole."""
    decoder = FrameDecoder(LIMIT)
    data = frame(b"hello world")
    for i, byte in enumerate(data[:-1]):
        assert decoder.feed(bytes([byte])) == []
        assert decoder.buffered == i + 1
    assert decoder.feed(data[-1:]) == [b"hello world"]
    assert decoder.buffered == 0


def test_several_frames_in_one_feed_come_out_in_order() -> None:
    """One feed holding three frames and the start of a fourth yields the three, keeps the rest."""
    decoder = FrameDecoder(LIMIT)
    fourth = frame(b"four")
    out = decoder.feed(frame(b"one") + frame(b"") + frame(b"three") + fourth[:6])
    assert out == [b"one", b"", b"three"]
    assert decoder.buffered == 6
    assert decoder.feed(fourth[6:]) == [b"four"]
    assert decoder.buffered == 0


def test_a_negative_size_is_refused() -> None:
    """A negative size field raises FrameTooLargeError naming the size."""
    decoder = FrameDecoder(LIMIT)
    with pytest.raises(FrameTooLargeError, match="negative size -1") as caught:
        decoder.feed(struct.pack(">i", -1))
    assert caught.value.size == -1
    assert caught.value.limit == LIMIT


def test_an_oversized_frame_is_refused_from_its_size_field_alone() -> None:
    """A size above the limit raises as soon as the 4-byte size arrives, before any of the
    announced body is buffered (a hostile size cannot make the broker allocate)."""
    decoder = FrameDecoder(LIMIT)
    with pytest.raises(FrameTooLargeError, match=f"exceeds socket.request.max.bytes={LIMIT}") as caught:
        decoder.feed(struct.pack(">i", LIMIT + 1))
    assert caught.value.size == LIMIT + 1
    huge = FrameDecoder(LIMIT)
    with pytest.raises(FrameTooLargeError):
        huge.feed(struct.pack(">i", 2**31 - 1))
    assert huge.buffered <= 4


def test_an_oversized_frame_after_good_ones_still_raises() -> None:
    """A bad size behind complete frames in the same feed raises (the connection is closing)."""
    decoder = FrameDecoder(LIMIT)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(frame(b"fine") + struct.pack(">i", LIMIT + 1))


def test_a_frame_of_exactly_the_limit_is_accepted() -> None:
    """The limit is inclusive, as in Kafka's NetworkReceive."""
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(frame(b"x" * LIMIT)) == [b"x" * LIMIT]


@given(
    payloads=st.lists(st.binary(max_size=64), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
)
def test_any_split_of_a_stream_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    """However the stream is cut into feeds, the frames come out whole, in order, and nothing
    is left buffered at the end."""
    stream = b"".join(frame(p) for p in payloads)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = FrameDecoder(64)
    out: list[bytes] = []
    for start, end in zip(points, points[1:]):
        out += decoder.feed(stream[start:end])
    assert out == payloads
    assert decoder.buffered == 0


@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_frames_are_read_only_and_decodable_however_they_arrive(cuts: list[int]) -> None:
    """Frames are views, never writable ones (kio's native reader refuses a writable buffer),
    whether they were split out of one chunk or completed in the decoder's buffer, and a
    request fed in pieces decodes as it was sent."""
    request = struct.pack(">hhih", 18, 3, 7, 4) + b"test" + b"\x00"  # ApiVersions v3 header
    request += b"\x05kcat\x041.0\x00"  # client software name and version, no tagged fields
    stream = frame(request) * 3
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = FrameDecoder(LIMIT)
    out = []
    for start, end in zip(points, points[1:]):
        out += decoder.feed(stream[start:end])
    assert out == [request] * 3
    for piece in out:
        assert memoryview(piece).readonly
        decoded = decode_request(piece)
        assert (decoded.api_key, decoded.correlation_id, decoded.client_id) == (18, 7, "test")


def test_frames_do_not_change_when_more_data_arrives() -> None:
    """A frame handed out stays as it was while the decoder keeps buffering (it is a view of
    bytes the decoder no longer writes to)."""
    decoder = FrameDecoder(LIMIT)
    stream = frame(b"first") + frame(b"second")
    first = decoder.feed(stream[:3])
    first += decoder.feed(stream[3:12])
    assert first == [b"first"]
    assert decoder.feed(stream[12:] + frame(b"x" * 100)[:50]) == [b"second"]
    assert first == [b"first"]


def receive(decoder: FrameDecoder, data: bytes, sizes: list[int]) -> list[bytes]:
    """Deliver ``data`` as a socket would through asyncio.BufferedProtocol: each receive writes
    up to the size asked for (and up to the room the decoder offers) into get_buffer()."""
    out: list[bytes] = []
    position = 0
    index = 0
    while position < len(data):
        target = decoder.get_buffer()
        assert len(target) > 0 and not target.readonly
        count = min(len(target), len(data) - position, sizes[index % len(sizes)] if sizes else 1 << 30)
        index += 1
        target[:count] = data[position : position + count]
        position += count
        out += [bytes(piece) for piece in decoder.buffer_updated(count)]
    return out


@given(
    payloads=st.lists(st.binary(max_size=300), max_size=30),
    big=st.lists(st.integers(min_value=60_000, max_value=300_000), max_size=2),
    sizes=st.lists(st.integers(min_value=1, max_value=100_000), max_size=10),
)
def test_any_sequence_of_receives_yields_the_same_frames(
    payloads: list[bytes], big: list[int], sizes: list[int]
) -> None:
    """Through get_buffer/buffer_updated, whatever the receive sizes, frames small and large
    (larger than one receive buffer) come out whole and in order, nothing left buffered."""
    payloads = payloads + [bytes([n % 251]) * n for n in big]
    decoder = FrameDecoder(1 << 20)
    assert receive(decoder, b"".join(frame(p) for p in payloads), sizes) == payloads
    assert decoder.buffered == 0


def test_a_large_frame_is_received_in_place_into_a_buffer_of_its_size() -> None:
    """Once a frame's size is known the decoder offers room for all of it, so the kernel writes
    it in one place and the frame is a view of that buffer (no reassembly copy)."""
    decoder = FrameDecoder(1 << 24)
    payload = b"p" * 3_000_000
    stream = frame(payload)
    first = decoder.get_buffer()
    first[:10] = stream[:10]
    assert decoder.buffer_updated(10) == []
    target = decoder.get_buffer()
    assert len(target) == len(stream) - 10
    target[: len(stream) - 13] = stream[10:-3]
    assert decoder.buffer_updated(len(stream) - 13) == []
    rest = decoder.get_buffer()
    assert rest.obj is target.obj and len(rest) == 3  # the last bytes go to the same buffer
    rest[:3] = stream[-3:]
    (out,) = decoder.buffer_updated(3)
    assert isinstance(out, memoryview) and out.obj is not None and len(out.obj) == len(stream)
    assert out == payload


def test_a_huge_announced_frame_does_not_reserve_its_size_up_front() -> None:
    """A client announcing a frame at the limit (100 MB here) without sending it gets a buffer of
    at most PREALLOCATE_MAX_BYTES; the buffer grows only as bytes arrive."""
    decoder = FrameDecoder(100 * 1024 * 1024)
    decoder.feed(struct.pack(">i", 100 * 1024 * 1024) + b"x" * 10)
    assert len(decoder.get_buffer()) <= PREALLOCATE_MAX_BYTES
