"""Type notes: the Python and NumPy types the wire forms lose come back exactly."""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentgpt.wire import (
    JSON_MEDIA_TYPE,
    MSGPACK_MEDIA_TYPE,
    WireError,
    apply_types,
    data_types,
    decode,
    encode,
    value_from_wire,
    value_to_wire,
    value_types,
)

MEDIA_TYPES = [JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE]
PROPERTY_SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def through_wire(obj: Any, media_type: str) -> Any:
    return decode(encode({"v": obj}, media_type), media_type)["v"]


def assert_identical(actual: Any, expected: Any, path: str = "value") -> None:
    """The same types all the way down (dtypes and dict key order too); NaN equals NaN."""
    assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_identical(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_identical(a, e, f"{path}[{i}]")
    elif isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, path
        if expected.dtype == object:
            for i, (a, e) in enumerate(zip(actual.flat, expected.flat, strict=True)):
                assert_identical(a, e, f"{path}.flat[{i}]")
        else:
            assert np.array_equal(actual, expected, equal_nan=expected.dtype.kind == "f"), path
    elif isinstance(expected, (float, np.floating)) and math.isnan(expected):
        assert math.isnan(actual), path
    else:
        assert actual == expected, path


def data_roundtrip(value: Any, media_type: str) -> Any:
    """An info value as a client gets it: the value and its note through the wire."""
    note = through_wire(data_types(value), media_type)
    return apply_types(through_wire(value, media_type), note)


def value_roundtrip(space: gymnasium.Space, value: Any, media_type: str) -> Any:
    """An observation as a client gets it: read against its space, then its note applied."""
    note = through_wire(value_types(space, value), media_type)
    received = value_from_wire(space, through_wire(value_to_wire(space, value), media_type))
    return apply_types(received, note)


# ----------------------------------------------------------------------------- infos


def _object_array(items: list[Any]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


INFO = {
    "int": 3,
    "float": 0.25,
    "bool": True,
    "none": None,
    "text": "x",
    "inf": math.inf,
    "nan": math.nan,
    "neg_inf": -math.inf,
    "tuple": (1, "a", (2.0, None)),
    "list": [1, np.int8(2), (3,)],
    "np_float64": np.float64(1.5),
    "np_float32": np.float32(0.1),
    "np_int8": np.int8(-3),
    "np_uint64": np.uint64(2**64 - 1),
    "np_bool": np.bool_(False),
    "int8_array": np.array([1, 0, 1], dtype=np.int8),
    "float32_array": np.array([[0.1, math.nan], [math.inf, -1.0]], dtype=np.float32),
    "bool_array": np.array([True, False]),
    "str_array": np.array(["a", "bcd"]),
    "zero_size": np.zeros((0, 3), dtype=np.float32),
    "zero_d": np.array(7, dtype=np.int16),
    "objects": _object_array([None, (1, 2), np.float32(2.5), "s"]),
    "objects_2d": np.array([[None, 1], [(2,), "x"]], dtype=object),
    "nested": {"a": {"b": (np.int64(1),)}, "c": []},
}


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
def test_info_values_come_back_with_their_types(media_type):
    assert_identical(data_roundtrip(INFO, media_type), INFO)


def test_byte_string_arrays_come_back_in_msgpack():
    """JSON cannot carry them at all; MessagePack carries them as lists of bytes."""
    value = {"raw": np.array([b"ab", b"c"])}
    assert_identical(data_roundtrip(value, MSGPACK_MEDIA_TYPE), value)


def test_plain_data_needs_no_note():
    assert data_types({"a": 1, "b": [0.5, "x", None, True], "c": {"d": []}}) is None
    assert data_types({}) is None
    assert data_types(math.inf) == "float"


def test_notes_are_plain_data_naming_numpy_dtypes():
    assert data_types(np.array([1, 0], dtype=np.int8)) == {"array": "|i1"}
    assert data_types(np.zeros((0, 2))) == {"array": "<f8", "shape": [0, 2]}
    assert data_types((1, 2)) == {"tuple": None}
    assert data_types([1, np.int64(2)]) == {"list": [None, "<i8"]}
    assert data_types({"k": np.bool_(True), "p": 1}) == {"dict": {"k": "|b1"}}


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.integers(-128, 127).map(np.int8),
    st.integers(0, 2**64 - 1).map(np.uint64),
    st.floats(width=32).map(np.float32),
    st.floats().map(np.float64),
    st.booleans().map(np.bool_),
)
arrays = st.sampled_from([np.int8, np.int64, np.uint16, np.float32, np.float64, np.bool_]).flatmap(
    lambda dtype: st.lists(st.integers(0, 1), max_size=4).map(lambda v: np.array(v, dtype=dtype))
)
data = st.recursive(
    st.one_of(scalars, arrays),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text(min_size=1, max_size=3), children, max_size=3),
        st.lists(children, max_size=3).map(_object_array),
    ),
    max_leaves=8,
)


@PROPERTY_SETTINGS
@given(value=data)
def test_any_info_value_roundtrips_exactly(value):
    for media_type in MEDIA_TYPES:
        assert_identical(data_roundtrip(value, media_type), value)


# ----------------------------------------------------------------------------- observations

DICT_SPACE = spaces.Dict(
    {
        "pos": spaces.Box(-1, 1, (2,), np.float32),
        "id": spaces.Discrete(5),
        "pair": spaces.Tuple((spaces.Discrete(3), spaces.Text(4))),
    }
)


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize(
    ("space", "value"),
    [
        (spaces.Discrete(500), 42),  # Taxi: a Python int
        (spaces.Discrete(5, start=-2), np.int32(-1)),  # another NumPy integer than the space's
        (spaces.Tuple((spaces.Discrete(32), spaces.Discrete(2))), (7, 1)),  # Blackjack
        (spaces.Tuple((spaces.Discrete(3), spaces.Discrete(2))), [np.int64(1), 0]),  # a list
        (spaces.Box(0, 9, (3,), np.float32), np.array([1, 2, 3], dtype=np.int8)),
        (spaces.Box(0, 9, (), np.float32), np.float32(4.5)),
        (spaces.MultiBinary(3), np.array([1, 0, 1], dtype=np.int64)),
        (spaces.Sequence(spaces.Discrete(4)), (1, 3, 0)),
        (spaces.Sequence(spaces.Discrete(4)), []),
        (spaces.OneOf((spaces.Discrete(2), spaces.Box(0, 1, (2,), np.float32))), (0, 1)),
        # The env's own key order, not the space's sorted one, and Python types inside.
        (DICT_SPACE, {"pos": np.zeros(2, np.float32), "pair": (2, "ab"), "id": 4}),
    ],
)
def test_observations_come_back_as_the_env_returned_them(space, value, media_type):
    assert_identical(value_roundtrip(space, value, media_type), value)


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
def test_canonical_values_need_no_note(media_type):
    DICT_SPACE.seed(0)
    sample = DICT_SPACE.sample()
    assert value_types(DICT_SPACE, sample) is None
    assert value_types(spaces.Box(0, 1, (2,), np.float32), np.zeros(2, np.float32)) is None
    assert value_types(spaces.Discrete(3), np.int64(1)) is None


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
def test_dict_values_keep_the_key_order_they_were_written_in(media_type):
    space = spaces.Dict({"b": spaces.Discrete(2), "a": spaces.Discrete(2)})
    assert list(space.spaces) == ["a", "b"]  # Gymnasium sorts a Dict space's keys
    wire_value = through_wire(value_to_wire(space, {"b": 1, "a": 0}), media_type)
    assert list(wire_value) == ["b", "a"]
    assert list(value_from_wire(space, wire_value)) == ["b", "a"]


# ----------------------------------------------------------------------------- malformed notes


@pytest.mark.parametrize(
    ("value", "note"),
    [
        (1, "no-such-type"),
        (1, {"array": "<M8"}),  # datetimes are not a kind a note may name
        (1, {"array": "<" + "f" * 20}),
        ([1, 2], {"tuple": [None]}),  # the items do not match
        ([1], {"array": "|O", "items": [None, None]}),
        ("x", {"list": None}),
        (1, {"dict": {}}),
        (1, {}),
        (1, {"what": 1}),
        (1, 5),
        ("abc", "int"),
        ([1], {"array": "<i8", "shape": [-1]}),
        (["a"], {"array": "<U99999999"}),  # a short note may not make the reader allocate GBs
        ([[1]], {"array": "|O", "shape": [100000000, 1]}),
        ([[1], [2, 3]], {"array": "|O", "shape": [2, 1]}),
    ],
)
def test_malformed_notes_raise_wire_error(value, note):
    with pytest.raises(WireError):
        apply_types(value, note)
