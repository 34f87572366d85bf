"""The two encodings: plain values, NumPy values, non-finite floats, ext layout, negotiation."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgpt.wire import (
    JSON_MEDIA_TYPE,
    MSGPACK_MEDIA_TYPE,
    WireError,
    decode,
    encode,
    media_type_from_header,
    with_string_keys,
)

MEDIA_TYPES = [JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE]


def through_wire(obj: Any, media_type: str) -> Any:
    return decode(encode(obj, media_type), media_type)


def ext(dtype: str, shape: list[int], data: bytes) -> msgpack.ExtType:
    """An array extension built by hand, exactly as docs/protocol.md lays it out."""
    return msgpack.ExtType(1, msgpack.packb([dtype, shape, data], use_bin_type=True))


# -------------------------------------------------------------------------- plain values

plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(value=plain_values)
def test_plain_values_roundtrip_in_both_encodings(value: Any) -> None:
    for media_type in MEDIA_TYPES:
        assert through_wire(value, media_type) == value


def test_none_survives_in_lists_and_maps() -> None:
    value = {
        "observation": [None, np.array([1.0, 2.0], np.float32)],
        "reward": [1.0, None],
        "info": [{"a": None}, None],
    }
    for media_type in MEDIA_TYPES:
        back = through_wire(value, media_type)
        assert back["observation"][0] is None
        assert back["reward"] == [1.0, None]
        assert back["info"] == [{"a": None}, None]


def test_tuples_become_lists() -> None:
    for media_type in MEDIA_TYPES:
        assert through_wire({"t": (1, (2, 3))}, media_type) == {"t": [1, [2, 3]]}


def test_empty_body_is_an_empty_map() -> None:
    for media_type in MEDIA_TYPES:
        assert decode(b"", media_type) == {}


# ----------------------------------------------------------------------------- NumPy values


def test_numpy_scalars_in_info_become_plain_values() -> None:
    info = {
        "f32": np.float32(0.5),
        "f64": np.float64(0.25),
        "i64": np.int64(-3),
        "u8": np.uint8(200),
        "b": np.bool_(True),
        "nested": [{"x": np.int32(7)}],
    }
    for media_type in MEDIA_TYPES:
        back = through_wire(info, media_type)
        assert back == {
            "f32": 0.5,
            "f64": 0.25,
            "i64": -3,
            "u8": 200,
            "b": True,
            "nested": [{"x": 7}],
        }
        assert type(back["f32"]) is float and type(back["i64"]) is int
        assert type(back["b"]) is bool and type(back["nested"][0]["x"]) is int


def test_json_writes_arrays_as_nested_lists_with_short_floats() -> None:
    body = encode({"obs": np.array([[0.1, 4.8], [1.0, -2.5]], np.float32)}, JSON_MEDIA_TYPE)
    assert body == b'{"obs":[[0.1,4.8],[1.0,-2.5]]}'
    back = np.array(json.loads(body)["obs"], dtype=np.float32)
    np.testing.assert_array_equal(back, np.array([[0.1, 4.8], [1.0, -2.5]], np.float32))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_json_short_floats_read_back_to_the_same_values(dtype: Any) -> None:
    rng = np.random.default_rng(0)
    values = (rng.standard_normal(2000) * 10.0 ** rng.integers(-30, 30, 2000)).astype(dtype)
    back = np.array(through_wire(values, JSON_MEDIA_TYPE), dtype=np.float64).astype(dtype)
    np.testing.assert_array_equal(back, values)


def test_msgpack_arrays_come_back_with_dtype_shape_and_values() -> None:
    arrays = [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([True, False, True]),
        np.array(7, dtype=np.int64),
        np.zeros((0, 4), dtype=np.uint8),
        np.arange(12, dtype=np.int16).reshape(3, 4)[:, ::2],  # not contiguous
        np.array([1.5, -2.0], dtype=">f8"),  # big-endian input
    ]
    for array in arrays:
        back = through_wire({"a": array}, MSGPACK_MEDIA_TYPE)["a"]
        assert isinstance(back, np.ndarray)
        assert back.dtype == array.dtype.newbyteorder("=")
        assert back.shape == array.shape
        np.testing.assert_array_equal(back, array)
        assert back.flags.writeable


def test_msgpack_arrays_are_never_lists() -> None:
    body = encode({"obs": np.zeros(3, np.float32)}, MSGPACK_MEDIA_TYPE)
    raw = msgpack.unpackb(body)
    assert isinstance(raw["obs"], msgpack.ExtType) and raw["obs"].code == 1


def test_object_arrays_travel_as_lists() -> None:
    final_obs = np.array([None, np.array([1.0, 2.0], np.float32)], dtype=object)
    back = through_wire({"final_obs": final_obs}, MSGPACK_MEDIA_TYPE)["final_obs"]
    assert back[0] is None
    np.testing.assert_array_equal(back[1], np.array([1.0, 2.0], np.float32))
    assert through_wire({"final_obs": final_obs}, JSON_MEDIA_TYPE) == {
        "final_obs": [None, [1.0, 2.0]]
    }


def test_vector_step_response_roundtrips() -> None:
    response = {
        "observation": np.ones((64, 4), np.float32),
        "reward": np.ones(64),
        "terminated": np.zeros(64, dtype=bool),
        "truncated": np.zeros(64, dtype=bool),
        "info": {"episode": {"r": np.arange(64.0), "_r": np.ones(64, dtype=bool)}},
    }
    back = through_wire(response, MSGPACK_MEDIA_TYPE)
    assert back["observation"].dtype == np.float32 and back["observation"].shape == (64, 4)
    assert back["terminated"].dtype == np.bool_
    np.testing.assert_array_equal(back["info"]["episode"]["r"], np.arange(64.0))
    json_back = through_wire(response, JSON_MEDIA_TYPE)
    assert json_back["terminated"] == [False] * 64
    assert json_back["observation"][0] == [1.0, 1.0, 1.0, 1.0]


# ------------------------------------------------------------------------ non-finite floats


def test_json_writes_non_finite_floats_as_strings_everywhere() -> None:
    value = {
        "observation": np.array([np.nan, np.inf, -np.inf, 1.0], np.float32),
        "reward": math.nan,
        "info": {"best": -math.inf, "scalar": np.float64(np.inf), "list": [math.inf]},
    }
    body = encode(value, JSON_MEDIA_TYPE)
    assert body == (
        b'{"observation":["NaN","Infinity","-Infinity",1.0],"reward":"NaN",'
        b'"info":{"best":"-Infinity","scalar":"Infinity","list":["Infinity"]}}'
    )
    json.loads(body)  # strict JSON: no bare NaN/Infinity literals


def test_msgpack_carries_non_finite_floats_natively() -> None:
    value = {"observation": np.array([np.nan, -np.inf], np.float64), "reward": math.inf}
    back = through_wire(value, MSGPACK_MEDIA_TYPE)
    assert np.isnan(back["observation"][0]) and back["observation"][1] == -np.inf
    assert back["reward"] == math.inf


def test_json_reader_accepts_bare_non_finite_literals() -> None:
    back = decode(b'{"reward": NaN, "x": [Infinity, -Infinity]}', JSON_MEDIA_TYPE)
    assert math.isnan(back["reward"]) and back["x"] == [math.inf, -math.inf]


# ------------------------------------------------------------------------- ext byte layout


def test_encoder_writes_the_documented_ext_layout() -> None:
    array = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    data = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    assert encode({"obs": array}, MSGPACK_MEDIA_TYPE) == msgpack.packb(
        {"obs": ext("<f4", [2, 2], data)}, use_bin_type=True
    )
    payload = msgpack.unpackb(msgpack.unpackb(encode(array, MSGPACK_MEDIA_TYPE)).data)
    assert payload == ["<f4", [2, 2], data]


@pytest.mark.parametrize(
    ("dtype", "shape", "data", "expected"),
    [
        ("<f4", [2, 2], struct.pack("<4f", 1, 2, 3, 4), np.array([[1, 2], [3, 4]], np.float32)),
        (">f4", [2], struct.pack(">2f", 1.5, -2), np.array([1.5, -2], np.float32)),
        ("<f8", [], struct.pack("<d", math.inf), np.array(math.inf)),
        ("<i8", [3], struct.pack("<3q", -1, 0, 2**62), np.array([-1, 0, 2**62], np.int64)),
        ("|u1", [2, 0], b"", np.zeros((2, 0), np.uint8)),
        ("|i1", [2], bytes([0xFF, 0x01]), np.array([-1, 1], np.int8)),
        ("|b1", [3], bytes([1, 0, 2]), np.array([True, False, True])),
    ],
)
def test_decoder_reads_hand_built_ext(
    dtype: str, shape: list, data: bytes, expected: np.ndarray
) -> None:
    value = decode(msgpack.packb({"a": ext(dtype, shape, data)}), MSGPACK_MEDIA_TYPE)["a"]
    assert value.dtype == expected.dtype and value.shape == expected.shape
    np.testing.assert_array_equal(value, expected)


def test_arrays_whose_payloads_share_a_length_decode_each_by_its_own_header() -> None:
    # Payloads of one length with different headers: the decoder remembers headers by
    # payload length, so each must still be read by its own header, turn after turn.
    arrays = [
        np.arange(8, dtype=np.float64),  # 64 bytes
        np.arange(8, dtype=np.int64),  # 64 bytes, another dtype
        np.arange(16, dtype=np.float32).reshape(2, 8),  # 64 bytes, another shape
        np.arange(16, dtype=np.int32).reshape(8, 2),
        np.arange(64, dtype=np.uint8).reshape(4, 16),
        np.ones(64, dtype=bool),
    ]
    for _ in range(3):
        for array in arrays:
            back = decode(encode(array, MSGPACK_MEDIA_TYPE), MSGPACK_MEDIA_TYPE)
            assert back.dtype == array.dtype and back.shape == array.shape
            np.testing.assert_array_equal(back, array)
            assert back.flags.writeable and back.flags.aligned


def test_a_known_header_with_other_data_decodes_the_new_data() -> None:
    first = decode(encode(np.zeros((3, 4), np.float32), MSGPACK_MEDIA_TYPE), MSGPACK_MEDIA_TYPE)
    second = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = decode(encode(second, MSGPACK_MEDIA_TYPE), MSGPACK_MEDIA_TYPE)
    np.testing.assert_array_equal(back, second)
    assert not np.shares_memory(back, first)


def test_big_endian_arrays_encode_little_endian_each_time() -> None:
    array = np.array([1.5, -2.0], dtype=">f8")
    for _ in range(2):  # the second time too: big-endian layouts are never cached
        payload = msgpack.unpackb(msgpack.unpackb(encode(array, MSGPACK_MEDIA_TYPE)).data)
        assert payload == ["<f8", [2], struct.pack("<2d", 1.5, -2.0)]


def test_a_big_endian_payload_decodes_to_native_order_each_time() -> None:
    data = msgpack.packb(ext(">i4", [2], struct.pack(">2i", 7, -1)))
    for _ in range(2):
        value = decode(data, MSGPACK_MEDIA_TYPE)
        assert value.dtype == np.dtype("int32") and value.dtype.isnative
        np.testing.assert_array_equal(value, [7, -1])


# -------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "data",
    [b"{", b'{"a": }', b"\xff\xfe", b'{"a": 1} x', b"[" * 100000, b'{"a": "\xff"}'],
)
def test_malformed_json_raises_wire_error(data: bytes) -> None:
    with pytest.raises(WireError, match="malformed JSON"):
        decode(data, JSON_MEDIA_TYPE)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x92\x01", "malformed MessagePack"),  # truncated array
        (b"\xc1", "malformed MessagePack"),  # reserved byte
        (b"\x01\x02", "malformed MessagePack"),  # trailing data
        (b"\xa2\xff\xfe", "malformed MessagePack"),  # invalid UTF-8
        (msgpack.packb({1: 2}), "malformed MessagePack"),  # integer map key
        (msgpack.packb(msgpack.ExtType(5, b"")), "unknown MessagePack extension type 5"),
        (msgpack.packb(msgpack.ExtType(1, b"\x93")), "malformed MessagePack"),
        (msgpack.packb(msgpack.ExtType(1, msgpack.packb([1, 2]))), "[dtype, shape, data]"),
        (msgpack.packb(ext("<f4", [2], b"\x00" * 4)), "must be bin of 8 bytes"),
        (msgpack.packb(ext("<f4", [-1], b"")), "non-negative integers"),
        (msgpack.packb(ext("|O", [1], b"\x00" * 8)), "unsupported array dtype '|O'"),
        (msgpack.packb(ext("<U2", [1], b"\x00" * 8)), "unsupported array dtype '<U2'"),
        (msgpack.packb(ext("<c8", [1], b"\x00" * 8)), "unsupported array dtype '<c8'"),
        (msgpack.packb(ext("nonsense", [1], b"\x00")), "unknown array dtype 'nonsense'"),
        (msgpack.packb(ext("<f4", [2**40, 2**40], b"")), "must be bin of"),
    ],
)
def test_malformed_msgpack_raises_wire_error(data: bytes, message: str) -> None:
    with pytest.raises(WireError) as caught:
        decode(data, MSGPACK_MEDIA_TYPE)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [{"a": object()}, {"a": np.array([1 + 2j])}, {"a": np.datetime64("2020-01-01")}, {"a": 1 + 2j}],
)
def test_values_neither_encoding_can_carry_raise_wire_error(value: Any) -> None:
    for media_type in MEDIA_TYPES:
        with pytest.raises(WireError, match="cannot be encoded|cannot encode"):
            encode(value, media_type)


def test_bytes_travel_in_msgpack_only() -> None:
    assert through_wire({"b": b"\x00\x01"}, MSGPACK_MEDIA_TYPE) == {"b": b"\x00\x01"}
    with pytest.raises(WireError):
        encode({"b": b"\x00\x01"}, JSON_MEDIA_TYPE)


def test_unknown_media_type_is_refused() -> None:
    with pytest.raises(WireError, match="unsupported media type"):
        encode({}, "text/plain")
    with pytest.raises(WireError, match="unsupported media type"):
        decode(b"{}", "text/plain")


def test_media_type_aliases_work_for_encode_and_decode() -> None:
    body = encode({"a": 1}, "application/x-msgpack")
    assert decode(body, "application/msgpack; charset=binary") == {"a": 1}
    assert decode(b'{"a": 1}', "application/json; charset=utf-8") == {"a": 1}


# --------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("*/*", None),
        ("application/*", None),
        ("text/html", None),
        ("application/json", JSON_MEDIA_TYPE),
        ("application/json; charset=utf-8", JSON_MEDIA_TYPE),
        ("Application/JSON", JSON_MEDIA_TYPE),
        ("application/msgpack", MSGPACK_MEDIA_TYPE),
        ("application/x-msgpack", MSGPACK_MEDIA_TYPE),
        ("text/html, application/msgpack, application/json", MSGPACK_MEDIA_TYPE),
        ("application/json;q=0.5, application/msgpack", MSGPACK_MEDIA_TYPE),
        ("application/msgpack;q=0.2, application/json;q=0.9", JSON_MEDIA_TYPE),
        ("application/msgpack;q=0, */*", None),
        ("application/msgpack;q=0, application/json", JSON_MEDIA_TYPE),
        ("*/*;q=1, application/x-msgpack;q=0.8", MSGPACK_MEDIA_TYPE),
        ("application/json;q=bogus, application/msgpack;q=0.1", MSGPACK_MEDIA_TYPE),
    ],
)
def test_media_type_from_header(header: str | None, expected: str | None) -> None:
    assert media_type_from_header(header) == expected


def test_with_string_keys_makes_both_encodings_agree():
    info = {3: "three", "nested": {7: 1.5, "ok": [{(1, 2): None}]}, "arr": np.arange(2)}
    converted = with_string_keys(info)
    assert converted == {
        "3": "three",
        "nested": {"7": 1.5, "ok": [{"(1, 2)": None}]},
        "arr": info["arr"],
    }
    for media_type in (JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE):
        back = decode(encode(converted, media_type), media_type)
        assert set(back) == {"3", "nested", "arr"} and back["nested"]["7"] == 1.5
    plain = {"a": {"b": [1, {"c": 2}]}}
    assert with_string_keys(plain) is plain
