"""The ``/render`` body and answer round-trip through both encodings with their types."""

from __future__ import annotations

import numpy as np
import pytest

from agentgpt import wire
from agentgpt.protocol.answers import read_render, render_answer
from agentgpt.protocol.requests import parse_env_key, render_request

ENCODINGS = [wire.JSON_MEDIA_TYPE, wire.MSGPACK_MEDIA_TYPE]


def over_the_wire(body: dict, media_type: str) -> dict:
    return wire.decode(wire.encode(body, media_type), media_type)


@pytest.mark.parametrize("media_type", ENCODINGS)
def test_the_render_request_carries_the_env_key(media_type):
    assert parse_env_key(over_the_wire(render_request("k"), media_type)) == "k"


@pytest.mark.parametrize("media_type", ENCODINGS)
@pytest.mark.parametrize(
    "output",
    [
        np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
        (np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)),
        [np.ones((1, 2, 3), np.uint8)],
        "\x1b[41mS\x1b[0mFFF\nFHFH\n",
        None,
    ],
    ids=["frame", "vector-frames", "frame-list", "ansi", "none"],
)
def test_render_answers_give_back_what_the_env_rendered(media_type, output):
    answer = render_answer(output, wire.data_types(output))
    read = read_render(over_the_wire(answer, media_type))
    assert type(read) is type(output)
    if isinstance(output, (tuple, list)):
        assert len(read) == len(output)
        for frame, expected in zip(read, output, strict=True):
            assert frame.dtype == np.uint8
            np.testing.assert_array_equal(frame, expected)
    elif isinstance(output, np.ndarray):
        assert read.dtype == np.uint8
        np.testing.assert_array_equal(read, output)
    else:
        assert read == output


def test_an_answer_without_a_note_has_no_types():
    assert render_answer("text") == {"render": "text"}
    assert render_answer(None) == {"render": None}
