"""The hot path's WebSocket frame reader agrees with websockets, and hands over the rest."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from agentgpt.wire.wsframes import HAND_OVER, frame_header, masked_frame, read_frame

LENGTHS = [0, 1, 125, 126, 65535, 65536, 70000]


def _frame(opcode: Opcode, payload: bytes, masked: bool, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin).serialize(mask=masked, extensions=[])


def _with_rsv1(frame: bytes) -> bytes:
    return bytes([frame[0] | 0x40]) + frame[1:]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("opcode", [Opcode.BINARY, Opcode.TEXT])
def test_whole_data_frames_are_read_with_their_payload(length, masked, opcode) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    data = b"junk" + _frame(opcode, payload, masked) + b"next"
    assert read_frame(data, 4, masked, 1 << 20) == (int(opcode), len(data) - 4, payload)


@pytest.mark.parametrize("length", [0, 126, 70000])
def test_an_incomplete_frame_waits_for_more(length) -> None:
    data = _frame(Opcode.BINARY, b"a" * length, True)
    for cut in {0, 1, 2, 3, 5, 9, len(data) - 1} & set(range(len(data))):
        assert read_frame(data[:cut], 0, True, 1 << 20) is None


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_control_frames_are_whole_frames_without_a_payload(opcode) -> None:
    data = _frame(opcode, b"\x03\xe8" if opcode is Opcode.CLOSE else b"hi", True)
    assert read_frame(data, 0, True, 1 << 20) == (int(opcode), len(data), None)


@pytest.mark.parametrize(
    "data",
    [
        _frame(Opcode.BINARY, b"part", True, fin=False),  # a fragment
        _frame(Opcode.CONT, b"rest", True),
        _with_rsv1(_frame(Opcode.BINARY, b"x", True)),  # compressed, or garbage
        _frame(Opcode.BINARY, b"x", False),  # a client frame must be masked
        bytes([0x83, 0x80, 0, 0, 0, 0]),  # an unknown opcode
        _frame(Opcode.BINARY, b"y" * 2000, True),  # over the size limit
    ],
    ids=["fragment", "continuation", "rsv1", "unmasked", "opcode 3", "too big"],
)
def test_unusual_frames_are_handed_over(data: bytes) -> None:
    assert read_frame(data, 0, True, 1000) is HAND_OVER


def test_a_masked_frame_is_handed_over_where_frames_must_not_be() -> None:
    assert read_frame(_frame(Opcode.BINARY, b"x", True), 0, False, 1000) is HAND_OVER


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("binary", [True, False])
def test_answer_headers_are_those_websockets_writes(length: int, binary: bool) -> None:
    payload = b"x" * length
    frame = _frame(Opcode.BINARY if binary else Opcode.TEXT, payload, False)
    assert frame_header(binary, length) + payload == frame


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("binary", [True, False])
def test_request_frames_are_masked_frames_websockets_reads(length: int, binary: bool) -> None:
    from websockets.streams import StreamReader

    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    data = masked_frame(binary, payload)
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=True)
    with pytest.raises(StopIteration) as parsed:
        next(parser)
    frame = parsed.value.value
    assert frame.opcode == (Opcode.BINARY if binary else Opcode.TEXT) and frame.fin
    assert frame.data == payload
    assert read_frame(data, 0, True, 1 << 20) == (int(frame.opcode), len(data), payload)
    assert masked_frame(binary, payload) != data or length == 0  # a fresh key each time
