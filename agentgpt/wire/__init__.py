"""The wire format: JSON and MessagePack bodies, spaces and values.

Everything that crosses the network between an environment server and its clients goes
through this package, so both sides agree byte for byte with ``docs/protocol.md``:

- :func:`encode` / :func:`decode` turn maps of plain values and NumPy arrays into bytes of
  either encoding and back; :func:`media_type_from_header` picks the encoding.
- :func:`space_to_wire` / :func:`space_from_wire` carry Gymnasium spaces.
- :func:`value_to_wire` / :func:`value_from_wire` carry values of a space and give them
  back their exact Gymnasium type.
- :func:`value_types` / :func:`data_types` write the type notes that carry the Python and
  NumPy types the wire forms lose (a Python ``int`` observation, a tuple or an ``int8``
  array in an info dict); :func:`apply_types` gives those types back.
"""

from __future__ import annotations

from agentgpt.wire.codec import decode, encode, with_string_keys
from agentgpt.wire.errors import UnsupportedSpaceError, WireError
from agentgpt.wire.media import JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE, media_type_from_header
from agentgpt.wire.pytypes import apply_types, data_types, value_types
from agentgpt.wire.spaces import space_from_wire, space_to_wire
from agentgpt.wire.values import value_from_wire, value_to_wire

__all__ = [
    "JSON_MEDIA_TYPE",
    "MSGPACK_MEDIA_TYPE",
    "UnsupportedSpaceError",
    "WireError",
    "apply_types",
    "data_types",
    "decode",
    "encode",
    "media_type_from_header",
    "space_from_wire",
    "space_to_wire",
    "value_from_wire",
    "value_to_wire",
    "value_types",
    "with_string_keys",
]
