"""Spaces and their values through the wire: property tests over arbitrary nested spaces."""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector.utils import batch_space
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from agentgpt.wire import (
    JSON_MEDIA_TYPE,
    MSGPACK_MEDIA_TYPE,
    UnsupportedSpaceError,
    WireError,
    decode,
    encode,
    space_from_wire,
    space_to_wire,
    value_from_wire,
    value_to_wire,
)

MEDIA_TYPES = [JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE]
FLOAT_DTYPES = [np.float16, np.float32, np.float64]
INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ----------------------------------------------------------------------------- helpers


def through_wire(obj: Any, media_type: str) -> Any:
    """``obj`` as the peer sees it: encoded, then decoded."""
    return decode(encode(obj, media_type), media_type)


def roundtrip_space(space: gymnasium.Space, media_type: str) -> gymnasium.Space:
    return space_from_wire(through_wire(space_to_wire(space), media_type))


def roundtrip_value(space: gymnasium.Space, value: Any, media_type: str) -> Any:
    wire = through_wire({"value": value_to_wire(space, value)}, media_type)
    return value_from_wire(space, wire["value"])


def assert_same_value(expected: Any, actual: Any, path: str = "value") -> None:
    """Exact equality of Gymnasium values: types, dtypes, shapes, key order; NaN == NaN."""
    if isinstance(expected, np.generic) and isinstance(actual, np.ndarray) and actual.ndim == 0:
        # Gymnasium samples scalars for 0-d integer Box/MultiDiscrete spaces, whose own
        # ``contains`` wants arrays; the wire gives the 0-d array.
        expected = np.asarray(expected)
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), f"{path}: {type(actual)} is not an ndarray"
        assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{path}: shape {actual.shape} != {expected.shape}"
        equal_nan = expected.dtype.kind == "f"
        assert np.array_equal(actual, expected, equal_nan=equal_nan), (
            f"{path}: {actual} != {expected}"
        )
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {type(actual)} is not a dict"
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same_value(expected[key], actual[key], f"{path}[{key!r}]")
    elif isinstance(expected, tuple):
        assert type(actual) is tuple, f"{path}: {type(actual)} is not a tuple"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for index, (exp, act) in enumerate(zip(expected, actual, strict=True)):
            assert_same_value(exp, act, f"{path}[{index}]")
    else:
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        if isinstance(expected, (float, np.floating)) and math.isnan(expected):
            assert math.isnan(actual), f"{path}: {actual} is not NaN"
        else:
            assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def gymnasium_contains(space: gymnasium.Space, value: Any) -> bool:
    try:
        return bool(space.contains(value))
    except ValueError:
        return False


def assert_contained(space: gymnasium.Space, sample: Any, value: Any) -> None:
    """``value`` is in ``space`` wherever Gymnasium agrees that its own sample is.

    A few degenerate spaces (a stacked Sequence of an empty Dict, 0-d MultiDiscrete) sample
    values that their own ``contains`` rejects or crashes on; equality covers those.
    """
    if gymnasium_contains(space, sample):
        assert space.contains(value)


def assert_same_space(expected: gymnasium.Space, actual: gymnasium.Space) -> None:
    """``==`` plus what ``__eq__`` ignores but sampling depends on."""
    assert actual == expected
    assert type(actual) is type(expected)
    if isinstance(expected, spaces.Box):
        np.testing.assert_array_equal(actual.low, expected.low)
        np.testing.assert_array_equal(actual.high, expected.high)
        np.testing.assert_array_equal(actual.bounded_below, expected.bounded_below)
        np.testing.assert_array_equal(actual.bounded_above, expected.bounded_above)
    elif isinstance(expected, (spaces.Discrete, spaces.MultiDiscrete)):
        assert actual.dtype == expected.dtype
    elif isinstance(expected, spaces.Text):
        assert actual.character_list == expected.character_list
    elif isinstance(expected, spaces.Dict):
        assert list(actual.spaces) == list(expected.spaces)
        for key in expected.spaces:
            assert_same_space(expected[key], actual[key])
    elif isinstance(expected, (spaces.Tuple, spaces.OneOf)):
        for exp, act in zip(expected.spaces, actual.spaces, strict=True):
            assert_same_space(exp, act)
    elif isinstance(expected, spaces.Sequence):
        assert actual.stack == expected.stack
        assert_same_space(expected.feature_space, actual.feature_space)


# -------------------------------------------------------------------------- strategies


@st.composite
def float_bounds(draw: st.DrawFn, dtype: np.dtype, sampleable: bool) -> tuple[float, float]:
    limit = 1e3 if sampleable else None
    finite = st.floats(
        min_value=-limit if limit else None,
        max_value=limit,
        allow_nan=False,
        allow_infinity=False,
        width=dtype.itemsize * 8,
    )
    # + 0.0 turns -0.0 into 0.0: Box(0.0, -0.0) is valid but cannot be sampled.
    low = draw(st.one_of(finite, st.just(-math.inf))) + 0.0
    high = draw(st.one_of(finite, st.just(math.inf))) + 0.0
    return (low, high) if low <= high else (high, low)


@st.composite
def int_bounds(draw: st.DrawFn, dtype: np.dtype, sampleable: bool) -> tuple[float, float]:
    """Integer bounds, or infinities for signed dtypes; narrow when the box will be sampled."""
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    if sampleable:
        lo, hi = max(lo, -1000), min(hi, 1000)
    low, high = sorted([draw(st.integers(lo, hi)), draw(st.integers(lo, hi))])
    # A 64-bit box unbounded on one side, once batched, has the dtype's limit as a finite
    # bound, and Gymnasium's sampler overflows past it: such boxes are not sampleable.
    if info.min < 0 and not (sampleable and dtype.itemsize == 8):
        return draw(st.sampled_from([low, -math.inf])), draw(st.sampled_from([high, math.inf]))
    return low, high


def int_box(
    lows: list[float], highs: list[float], shape: tuple[int, ...], dtype: Any
) -> spaces.Box:
    """An integer Box with per-entry bounds, where infinite entries are unbounded.

    Built from exact Python ints: Gymnasium's float-array path cannot hold int64 limits.
    """
    info = np.iinfo(dtype)
    low = np.array([info.min if x == -math.inf else x for x in lows], dtype=dtype)
    high = np.array([info.max if x == math.inf else x for x in highs], dtype=dtype)
    box = spaces.Box(low=low.reshape(shape), high=high.reshape(shape), dtype=dtype)
    box.bounded_below = np.array([x != -math.inf for x in lows], dtype=bool).reshape(shape)
    box.bounded_above = np.array([x != math.inf for x in highs], dtype=bool).reshape(shape)
    return box


@st.composite
def boxes(draw: st.DrawFn, sampleable: bool) -> spaces.Box:
    dtype = np.dtype(draw(st.sampled_from([*FLOAT_DTYPES, *INT_DTYPES, np.bool_])))
    shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    size = math.prod(shape)
    if dtype.kind == "b":
        pairs = draw(
            st.lists(st.sampled_from([(0, 0), (0, 1), (1, 1)]), min_size=size, max_size=size)
        )
        lows = np.array([p[0] for p in pairs], dtype=bool).reshape(shape)
        highs = np.array([p[1] for p in pairs], dtype=bool).reshape(shape)
        return spaces.Box(low=lows, high=highs, dtype=dtype)
    bounds = float_bounds(dtype, sampleable) if dtype.kind == "f" else int_bounds(dtype, sampleable)
    if draw(st.booleans()):  # one bound for every entry, the common constructor form
        low, high = draw(bounds)
        return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    pairs = draw(st.lists(bounds, min_size=size, max_size=size))
    lows, highs = [p[0] for p in pairs], [p[1] for p in pairs]
    if dtype.kind == "f":
        return spaces.Box(
            low=np.array(lows, dtype=dtype).reshape(shape),
            high=np.array(highs, dtype=dtype).reshape(shape),
            dtype=dtype,
        )
    return int_box(lows, highs, shape, dtype)


@st.composite
def discretes(draw: st.DrawFn) -> spaces.Discrete:
    dtype = draw(st.sampled_from(INT_DTYPES))
    signed = np.iinfo(dtype).min < 0
    start = draw(st.integers(-10 if signed else 0, 10))
    return spaces.Discrete(draw(st.integers(1, 20)), start=start, dtype=dtype)


@st.composite
def multi_discretes(draw: st.DrawFn) -> spaces.MultiDiscrete:
    dtype = draw(st.sampled_from(INT_DTYPES))
    signed = np.iinfo(dtype).min < 0
    shape = draw(array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    size = math.prod(shape)
    nvec = draw(st.lists(st.integers(1, 10), min_size=size, max_size=size))
    start = draw(st.lists(st.integers(-5 if signed else 0, 5), min_size=size, max_size=size))
    return spaces.MultiDiscrete(
        np.array(nvec, dtype=dtype).reshape(shape),
        dtype=dtype,
        start=np.array(start, dtype=dtype).reshape(shape),
    )


def multi_binaries() -> st.SearchStrategy[spaces.MultiBinary]:
    n = st.one_of(st.integers(1, 6), st.lists(st.integers(1, 3), min_size=1, max_size=3))
    return n.map(spaces.MultiBinary)


CHARACTERS = st.characters(exclude_categories=("Cs",))


@st.composite
def texts(draw: st.DrawFn) -> spaces.Text:
    min_length = draw(st.integers(0, 3))
    max_length = draw(st.integers(min_length, 6))
    charset = draw(st.text(CHARACTERS, min_size=1, max_size=10))
    return spaces.Text(max_length, min_length=min_length, charset=charset)


def leaf_spaces(sampleable: bool) -> st.SearchStrategy[gymnasium.Space]:
    return st.one_of(boxes(sampleable), discretes(), multi_discretes(), multi_binaries(), texts())


def nested_spaces(sampleable: bool) -> st.SearchStrategy[gymnasium.Space]:
    keys = st.text(CHARACTERS, min_size=1, max_size=5)

    def extend(children: st.SearchStrategy[gymnasium.Space]) -> st.SearchStrategy[gymnasium.Space]:
        return st.one_of(
            st.dictionaries(keys, children, max_size=3).map(spaces.Dict),
            st.lists(children, max_size=3).map(spaces.Tuple),
            st.builds(spaces.Sequence, children, stack=st.booleans()),
            st.lists(children, min_size=1, max_size=3).map(spaces.OneOf),
        )

    return st.recursive(leaf_spaces(sampleable), extend, max_leaves=5)


# ------------------------------------------------------------------------------ properties


@PROPERTY_SETTINGS
@given(space=nested_spaces(sampleable=False))
def test_any_space_roundtrips_exactly_in_both_encodings(space: gymnasium.Space) -> None:
    for media_type in MEDIA_TYPES:
        assert_same_space(space, roundtrip_space(space, media_type))


@PROPERTY_SETTINGS
@given(space=nested_spaces(sampleable=True), seed=st.integers(0, 2**32 - 1))
def test_any_sample_roundtrips_and_stays_in_the_space(space: gymnasium.Space, seed: int) -> None:
    space.seed(seed)
    sample = space.sample()
    for media_type in MEDIA_TYPES:
        received_space = roundtrip_space(space, media_type)
        value = roundtrip_value(received_space, sample, media_type)
        assert_same_value(sample, value)
        assert_contained(received_space, sample, value)
        assert_contained(space, sample, value)


@PROPERTY_SETTINGS
@given(space=nested_spaces(sampleable=True), n=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_batched_samples_of_vector_envs_roundtrip(
    space: gymnasium.Space, n: int, seed: int
) -> None:
    batched = batch_space(space, n)
    batched.seed(seed)
    sample = batched.sample()
    for media_type in MEDIA_TYPES:
        value = roundtrip_value(batched, sample, media_type)
        assert_same_value(sample, value)
        assert_contained(batched, sample, value)


# ------------------------------------------------------------------------ documented forms


def test_cartpole_observation_space_has_the_documented_json_form() -> None:
    space = gymnasium.make("CartPole-v1").observation_space
    body = encode(space_to_wire(space), JSON_MEDIA_TYPE)
    assert body == (
        b'{"type":"Box","shape":[4],"dtype":"float32",'
        b'"low":[-4.8,"-Infinity",-0.41887903,"-Infinity"],'
        b'"high":[4.8,"Infinity",0.41887903,"Infinity"]}'
    )


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (spaces.Discrete(3, start=-1), {"type": "Discrete", "n": 3, "start": -1, "dtype": "int64"}),
        (
            spaces.MultiDiscrete([3, 2], start=[1, 0]),
            {
                "type": "MultiDiscrete",
                "nvec": [3, 2],
                "start": [1, 0],
                "dtype": "int64",
                "shape": [2],
            },
        ),
        (spaces.MultiBinary(4), {"type": "MultiBinary", "n": 4}),
        (spaces.MultiBinary([2, 3]), {"type": "MultiBinary", "n": [2, 3]}),
        (
            spaces.Text(5, min_length=2, charset="ba"),
            {"type": "Text", "min_length": 2, "max_length": 5, "charset": "ba"},
        ),
        (
            spaces.Sequence(spaces.Discrete(2), stack=True),
            {
                "type": "Sequence",
                "space": {"type": "Discrete", "n": 2, "start": 0, "dtype": "int64"},
                "stack": True,
            },
        ),
    ],
)
def test_spaces_have_the_documented_json_fields(space: gymnasium.Space, expected: dict) -> None:
    assert through_wire(space_to_wire(space), JSON_MEDIA_TYPE) == expected


def test_dict_tuple_and_one_of_nest_spaces_in_order() -> None:
    space = spaces.Dict(
        {"z": spaces.Tuple([spaces.Discrete(2)]), "a": spaces.OneOf([spaces.MultiBinary(1)])},
        sort_keys=False,
    )
    wire = through_wire(space_to_wire(space), JSON_MEDIA_TYPE)
    assert list(wire["spaces"]) == ["z", "a"]
    assert wire["spaces"]["z"] == {
        "type": "Tuple",
        "spaces": [{"type": "Discrete", "n": 2, "start": 0, "dtype": "int64"}],
    }
    assert wire["spaces"]["a"] == {"type": "OneOf", "spaces": [{"type": "MultiBinary", "n": 1}]}
    assert list(roundtrip_space(space, MSGPACK_MEDIA_TYPE).spaces) == ["z", "a"]


def test_integer_box_keeps_unbounded_entries() -> None:
    box = spaces.Box(low=-np.inf, high=5, shape=(2,), dtype=np.int32)
    wire = through_wire(space_to_wire(box), JSON_MEDIA_TYPE)
    assert wire["low"] == ["-Infinity", "-Infinity"]
    assert wire["high"] == [5, 5]
    for media_type in MEDIA_TYPES:
        received = roundtrip_space(box, media_type)
        assert not received.bounded_below.any()
        assert received.bounded_above.all()
        assert received.low.tolist() == [np.iinfo(np.int32).min] * 2


def test_int64_bounds_beyond_float64_precision_stay_exact() -> None:
    box = int_box([-math.inf, 2**62 - 1], [2**62 + 1, 2**62 + 1], (2,), np.int64)
    for media_type in MEDIA_TYPES:
        received = roundtrip_space(box, media_type)
        assert received.high.tolist() == [2**62 + 1, 2**62 + 1]
        assert received.bounded_below.tolist() == [False, True]


def test_uint64_extreme_bounds_roundtrip() -> None:
    box = spaces.Box(low=0, high=np.iinfo(np.uint64).max, shape=(3,), dtype=np.uint64)
    for media_type in MEDIA_TYPES:
        assert_same_space(box, roundtrip_space(box, media_type))


# ----------------------------------------------------------------------- accepted values


def test_whole_number_floats_are_accepted_for_integer_spaces() -> None:
    assert_same_value(np.int64(1), value_from_wire(spaces.Discrete(2), 1.0))
    assert_same_value(
        np.array([2, 0], dtype=np.int64), value_from_wire(spaces.MultiDiscrete([3, 3]), [2.0, 0])
    )
    assert_same_value(
        np.array([1, 0, 1], dtype=np.int8), value_from_wire(spaces.MultiBinary(3), [True, 0, 1.0])
    )


def test_json_non_finite_strings_become_floats_in_a_box() -> None:
    space = spaces.Box(-np.inf, np.inf, (4,), np.float32)
    value = value_from_wire(space, ["NaN", "Infinity", "-Infinity", 1.5])
    assert value.dtype == np.float32
    assert np.isnan(value[0]) and value[1] == np.inf and value[2] == -np.inf and value[3] == 1.5


def test_msgpack_arrays_of_another_real_dtype_are_cast_without_loss() -> None:
    space = spaces.Box(-10, 10, (2,), np.float32)
    assert_same_value(np.array([1.0, -2.0], np.float32), value_from_wire(space, np.array([1, -2])))
    int_space = spaces.Box(0, 255, (2,), np.uint8)
    assert_same_value(
        np.array([3, 255], np.uint8), value_from_wire(int_space, np.array([3.0, 255.0]))
    )


def test_one_of_values_are_index_value_pairs() -> None:
    space = spaces.OneOf([spaces.Discrete(2), spaces.Box(0, 1, (2,), np.float32)])
    value = (np.int64(1), np.array([0.25, 0.5], np.float32))
    assert through_wire(value_to_wire(space, value), JSON_MEDIA_TYPE) == [1, [0.25, 0.5]]
    assert_same_value(value, value_from_wire(space, [1, [0.25, 0.5]]))


def test_stacked_sequence_of_boxes_is_one_array() -> None:
    space = spaces.Sequence(spaces.Box(0, 1, (2,), np.float32), stack=True)
    value = np.array([[0.5, 0.25], [1.0, 0.0], [0.0, 0.75]], dtype=np.float32)
    assert through_wire(value_to_wire(space, value), JSON_MEDIA_TYPE) == value.tolist()
    wire = through_wire(value_to_wire(space, value), MSGPACK_MEDIA_TYPE)
    assert isinstance(wire, np.ndarray) and wire.shape == (3, 2)
    assert_same_value(value, value_from_wire(space, wire))


def test_empty_stacked_sequence_keeps_its_inner_shape() -> None:
    space = spaces.Sequence(spaces.Box(0, 1, (4,), np.float32), stack=True)
    value = np.zeros((0, 4), dtype=np.float32)
    for media_type in MEDIA_TYPES:
        assert_same_value(value, roundtrip_value(space, value, media_type))


def test_batched_discrete_action_is_a_list_of_integers() -> None:
    space = batch_space(spaces.Discrete(3, start=1), 4)
    assert through_wire(value_to_wire(space, [1, 2, 3, 1]), JSON_MEDIA_TYPE) == [1, 2, 3, 1]
    assert_same_value(np.array([1, 2, 3, 1], np.int64), value_from_wire(space, [1, 2, 3, 1]))


def test_batched_dict_observation_roundtrips_in_both_encodings() -> None:
    single = spaces.Dict({"pos": spaces.Box(-1, 1, (2,), np.float32), "id": spaces.Discrete(5)})
    batched = batch_space(single, 3)
    batched.seed(3)
    sample = batched.sample()
    for media_type in MEDIA_TYPES:
        assert_same_value(sample, roundtrip_value(batched, sample, media_type))


# ------------------------------------------------------------------------ rejected values


@pytest.mark.parametrize(
    ("space", "obj", "message"),
    [
        (spaces.Discrete(3), 1.5, "expected an integer, got 1.5"),
        (spaces.Discrete(3), True, "expected an integer, got True"),
        (spaces.Discrete(3), "1", "expected an integer"),
        (spaces.Discrete(3), None, "expected an integer"),
        (spaces.Discrete(3, dtype=np.uint8), 300, "300 is out of range for uint8"),
        (spaces.Box(0, 1, (3,), np.float32), [0.5, 0.5], "expected shape (3,), got shape (2,)"),
        (spaces.Box(0, 1, (1,), np.float32), 0.5, "expected shape (1,), got shape ()"),
        (spaces.Box(0, 1, (2,), np.float32), [[0.5], [0.5, 0.5]], "rectangular"),
        (spaces.Box(0, 1, (2,), np.float32), [0.5, "x"], "got the string 'x'"),
        (spaces.Box(0, 1, (2,), np.float32), [0.5, None], "expected a number, got NoneType"),
        (spaces.Box(0, 1, (1,), np.float32), [1e300], "out of range for float32"),
        (spaces.Box(0, 1, (1,), np.float32), [True], "got booleans"),
        (spaces.Box(0, 255, (2,), np.uint8), [1, 256], "256 is out of range for uint8"),
        (spaces.Box(0, 255, (2,), np.uint8), [1, -1], "-1 is out of range for uint8"),
        (spaces.Box(0, 9, (1,), np.int64), [1.5], "expected integers (int64), got 1.5"),
        (spaces.Box(0, 9, (1,), np.int64), ["NaN"], "expected integers (int64), got nan"),
        (spaces.Box(0, 9, (1,), np.int64), [2**64], "too large"),
        (spaces.Box(0, 1, (1,), np.bool_), [2], "expected booleans"),
        (spaces.MultiBinary(2), [1, 2, 0], "expected shape (2,), got shape (3,)"),
        (spaces.MultiDiscrete([2, 2]), np.array([0.0, 0.5]), "got 0.5"),
        (spaces.Text(5), 12, "expected a string"),
        (spaces.Tuple([spaces.Discrete(2)] * 2), [1], "expected 2 values"),
        (spaces.Tuple([spaces.Discrete(2)]), 1, "expected a list"),
        (spaces.Dict({"a": spaces.Discrete(2)}), {}, "missing key(s) ['a']"),
        (spaces.Dict({"a": spaces.Discrete(2)}), {"a": 1, "b": 2}, "unexpected key(s) ['b']"),
        (spaces.Dict({"a": spaces.Discrete(2)}), [1], "expected a map"),
        (spaces.OneOf([spaces.Discrete(2)]), [1, 0], "index 1 is out of range"),
        (spaces.OneOf([spaces.Discrete(2)]), [0, 0, 0], "expected [index, value]"),
        (spaces.Sequence(spaces.Discrete(2)), 3, "expected a list"),
    ],
)
def test_values_that_do_not_fit_raise_wire_error(
    space: gymnasium.Space, obj: Any, message: str
) -> None:
    with pytest.raises(WireError) as caught:
        value_from_wire(space, obj)
    assert message in str(caught.value)


def test_nested_errors_name_the_path_and_the_inner_space() -> None:
    space = spaces.Dict(
        {"a": spaces.Tuple([spaces.Discrete(2), spaces.Box(0, 1, (3,), np.float32)])}
    )
    with pytest.raises(WireError) as caught:
        value_from_wire(space, {"a": [1, [0.5, 0.5]]})
    message = str(caught.value)
    assert message.startswith("at ['a'][1]: expected shape (3,), got shape (2,)")
    assert "Box(0.0, 1.0, (3,), float32)" in message


def test_value_to_wire_refuses_lossy_conversions() -> None:
    with pytest.raises(WireError, match="expected integers"):
        value_to_wire(spaces.Box(0, 9, (2,), np.int64), np.array([1.7, 2.0]))
    with pytest.raises(WireError, match="expected shape"):
        value_to_wire(spaces.Box(0, 1, (4,), np.float32), np.zeros(3, np.float32))


def test_bounds_are_left_to_the_space() -> None:
    """Values outside the bounds decode; ``space.contains`` is what rejects them."""
    space = spaces.Discrete(2)
    value = value_from_wire(space, 7)
    assert value == np.int64(7) and not space.contains(value)


# --------------------------------------------------------------------- unsupported spaces


class _CustomSpace(gymnasium.Space):
    def __init__(self) -> None:
        super().__init__(None, None)


@pytest.mark.parametrize(
    ("space", "name"),
    [
        (spaces.Graph(spaces.Box(0, 1, (2,)), spaces.Discrete(2)), "Graph"),
        (_CustomSpace(), "_CustomSpace"),
        (spaces.Dict({"inner": _CustomSpace()}), "_CustomSpace"),
    ],
)
def test_unsupported_spaces_are_named(space: gymnasium.Space, name: str) -> None:
    with pytest.raises(UnsupportedSpaceError, match=name):
        space_to_wire(space)


def test_unknown_space_type_on_the_wire_is_unsupported() -> None:
    with pytest.raises(UnsupportedSpaceError, match="'Graph'"):
        space_from_wire({"type": "Graph"})


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "a space must be a map"),
        ({"n": 2}, "needs a string 'type'"),
        ({"type": "Discrete"}, "Discrete space needs the field 'n'"),
        ({"type": "Discrete", "n": 0}, "invalid Discrete space"),
        ({"type": "Discrete", "n": 1.5}, "Discrete field 'n': expected an integer"),
        (
            {"type": "Box", "shape": [2], "dtype": "complex64", "low": [0, 0], "high": [1, 1]},
            "unsupported dtype",
        ),
        (
            {"type": "Box", "shape": [2], "dtype": "float32", "low": [0], "high": [1, 1]},
            "Box field 'low'",
        ),
        (
            {"type": "Box", "shape": [1], "dtype": "float32", "low": [2], "high": [1]},
            "invalid Box space",
        ),
        (
            {"type": "Box", "shape": [1], "dtype": "uint8", "low": ["-Infinity"], "high": [1]},
            "cannot be infinite",
        ),
        (
            {"type": "Tuple", "spaces": [{"type": "Discrete"}]},
            "Tuple space 0: Discrete space needs",
        ),
        (
            {"type": "Sequence", "space": {"type": "Discrete", "n": 2}, "stack": "yes"},
            "'stack' must be a boolean",
        ),
    ],
)
def test_malformed_space_maps_raise_wire_error(obj: Any, message: str) -> None:
    with pytest.raises(WireError) as caught:
        space_from_wire(obj)
    assert message in str(caught.value)
