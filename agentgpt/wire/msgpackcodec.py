"""MessagePack encoding: arrays as extension type 1 (dtype, shape, raw bytes).

Encoding relies on msgpack's ``default`` hook, which is only called for values msgpack
cannot pack itself, so plain maps, lists and numbers cost nothing extra. This is the hot
path of every remote step.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from agentgpt.wire.dtypes import checked_dtype
from agentgpt.wire.errors import WireError

__all__ = ["ARRAY_EXT_TYPE", "decode_msgpack", "encode_msgpack"]

ARRAY_EXT_TYPE = 1

# Arrays of these kinds travel as raw bytes; any other dtype has no portable layout.
_RAW_KINDS = "biuf"
_CACHE_LIMIT = 1024

# (dtype, shape) -> the ext payload's bytes that precede the raw data: the array header,
# the dtype string, the shape and the bin header. One step's arrays keep the same dtype
# and shape from call to call, so building it once saves most of the work. Only dtypes
# that travel as they are (raw kinds, little-endian or single bytes) are kept, so a
# cached prefix never needs the checks below.
_payload_prefixes: dict[tuple[np.dtype, tuple[int, ...]], bytes] = {}
# Decoding, the other way round: payload length -> the headers (payload prefixes) read
# before at that length, each with the dtype and shape it says. A payload that starts
# with a known header of its own length has exactly that header, so it needs no parsing.
_known_headers: dict[int, list[tuple[bytes, np.dtype, tuple[int, ...]]]] = {}
_HEADERS_PER_LENGTH = 4

# ``msgpack.ExtType`` checks its fields in Python on every construction; the fields built
# here are right by construction, so the tuple is made directly.
_new_ext = tuple.__new__
_ExtType = msgpack.ExtType


def _bin_header(length: int) -> bytes:
    if length < 0x100:
        return b"\xc4" + length.to_bytes(1, "big")
    if length < 0x10000:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def _payload_prefix(dtype: np.dtype, shape: tuple[int, ...], nbytes: int) -> bytes:
    prefix = b"\x93" + msgpack.packb(dtype.str) + msgpack.packb(list(shape))
    return prefix + _bin_header(nbytes)


def _array_ext(array: np.ndarray) -> Any:
    prefix = _payload_prefixes.get((array.dtype, array.shape))
    if prefix is not None:
        return _new_ext(_ExtType, (ARRAY_EXT_TYPE, prefix + array.tobytes()))
    dtype = array.dtype
    if dtype.kind not in _RAW_KINDS:
        if dtype.hasobject or dtype.kind in "US":
            return array.tolist()
        raise TypeError(f"arrays of dtype {dtype} cannot be encoded")
    if dtype.str[0] == ">":  # the wire is little-endian
        array = array.astype(dtype.newbyteorder("<"))
        return _ExtType(
            ARRAY_EXT_TYPE,
            _payload_prefix(array.dtype, array.shape, array.nbytes) + array.tobytes(),
        )
    prefix = _payload_prefix(dtype, array.shape, array.nbytes)
    if len(_payload_prefixes) >= _CACHE_LIMIT:
        _payload_prefixes.clear()
    _payload_prefixes[(dtype, array.shape)] = prefix
    return _new_ext(_ExtType, (ARRAY_EXT_TYPE, prefix + array.tobytes()))


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return _array_ext(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    raise TypeError(f"cannot encode a value of type {type(obj).__name__}")


def encode_msgpack(obj: Any) -> bytes:
    """MessagePack of ``obj``; NumPy arrays become ext 1, NumPy scalars plain numbers."""
    try:
        return msgpack.packb(obj, default=_default, use_bin_type=True)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise WireError(f"cannot encode as MessagePack: {exc}") from exc


def _dtype(dtype_str: Any) -> np.dtype:
    return checked_dtype(dtype_str, kinds=_RAW_KINDS, what="array dtype")


def _ext_hook(code: int, data: bytes) -> np.ndarray:
    """Ext 1 as a writeable, native-byte-order array that owns its memory."""
    if code != ARRAY_EXT_TYPE:
        raise WireError(f"unknown MessagePack extension type {code}")
    known = _known_headers.get(len(data))
    if known is not None:
        for header, dtype, shape in known:
            if data.startswith(header):
                return _array(data, len(header), dtype, shape)
    header_length, dtype, shape = _read_header(data)
    if dtype.isnative:
        if len(_known_headers) >= _CACHE_LIMIT:
            _known_headers.clear()
        known = _known_headers.setdefault(len(data), [])
        if len(known) >= _HEADERS_PER_LENGTH:
            del known[0]
        known.append((data[:header_length], dtype, shape))
        return _array(data, header_length, dtype, shape)
    raw = data[header_length:]
    return np.ndarray(shape, dtype, raw).astype(dtype.newbyteorder("="))


def _array(data: bytes, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The array of native ``dtype`` whose bytes start at ``offset`` in ``data``."""
    if dtype.kind == "b":
        # Any non-zero byte is True; normalizing keeps NumPy's bools well formed.
        return np.ndarray(shape, np.uint8, data, offset) != 0
    # A bytearray copy makes the array writeable, aligned and the sole owner of its memory.
    return np.ndarray(shape, dtype, bytearray(data[offset:]))


def _read_header(data: bytes) -> tuple[int, np.dtype, tuple[int, ...]]:
    """The length of an array payload's header, and the dtype and shape it says, checked
    against the raw bytes that follow it."""
    payload = msgpack.unpackb(data, raw=False)
    if type(payload) is not list or len(payload) != 3:
        raise WireError("an array extension must hold [dtype, shape, data]")
    dtype_str, shape, raw = payload
    dtype = _dtype(dtype_str)
    if type(shape) is not list or len(shape) > 32:
        raise WireError(f"array shape must be a list of at most 32 sizes, got {shape!r}")
    count = 1
    for size in shape:
        if type(size) is not int or size < 0:
            raise WireError(f"array shape must hold non-negative integers, got {shape!r}")
        count *= size
    if type(raw) is not bytes or len(raw) != count * dtype.itemsize:
        got = len(raw) if isinstance(raw, bytes) else type(raw).__name__
        raise WireError(
            f"array data must be bin of {count * dtype.itemsize} bytes for shape "
            f"{shape} and dtype {dtype_str}, got {got}"
        )
    return len(data) - len(raw), dtype, tuple(shape)


def decode_msgpack(data: bytes) -> Any:
    """Plain Python values, with ext 1 decoded into NumPy arrays (writeable copies).

    Map keys must be strings (or bin): integer keys are refused, as msgpack does by default,
    because they make hash collisions cheap for a hostile client.
    """
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False)
    except Exception as exc:  # msgpack reports malformed input with many exception types
        raise WireError(f"malformed MessagePack body: {exc}") from exc
