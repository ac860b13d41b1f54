"""FrameDecoder: Kafka's ``int32 size`` framing split out of a byte stream, sans I/O."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_broker.protocol.codec import decode_request
from reference_broker.protocol.framing import FrameDecoder, FrameTooLargeError, frame

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
