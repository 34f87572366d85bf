"""API keys: where a server gets them, and turning a request's bearer token into an owner.

What a caller makes belongs to the key that made it. Internally an owner is a label such as
``"key#2"`` (the key's position in the configured list), so that log lines and a server's
tables never hold a key itself. With no key configured every caller is the one anonymous
owner.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from agentgpt.protocol.keys import API_KEYS_ENV_VAR, AUTHORIZATION_HEADER, BEARER_SCHEME
from agentgpt.service import errors

__all__ = ["ANONYMOUS", "ApiKeys", "keys_from_env", "keys_from_file"]

#: The owner of everything on a server without keys.
ANONYMOUS = "anonymous"

_EXPECTED = f"'{AUTHORIZATION_HEADER}: {BEARER_SCHEME} <KEY>'"


def keys_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Keys from ``AGENTGPT_API_KEYS`` (comma separated; blanks ignored)."""
    value = (os.environ if environ is None else environ).get(API_KEYS_ENV_VAR, "")
    return [part.strip() for part in value.split(",") if part.strip()]


def keys_from_file(path: str | Path) -> list[str]:
    """Keys from a file: one per line; blank lines and lines starting with ``#`` ignored."""
    keys = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(line)
    return keys


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """Checks ``Authorization: Bearer KEY`` headers in constant time.

    Keys are stored as SHA-256 digests and every configured digest is compared on every
    check with :func:`hmac.compare_digest`, so neither a key's length nor which key matched
    leaks through timing.
    """

    def __init__(self, keys: Iterable[str] | None = None) -> None:
        if isinstance(keys, str | bytes):
            raise TypeError("api_keys must be a list of keys, not a single string")
        cleaned = []
        for key in keys or ():
            if not isinstance(key, str) or not key.strip():
                raise ValueError("API keys must be non-empty strings")
            if any(ch.isspace() for ch in key.strip()):
                raise ValueError("API keys must not contain whitespace")
            cleaned.append(key.strip())
        self._digests = [_digest(key) for key in dict.fromkeys(cleaned)]

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def owner_for(self, authorization: str | None) -> str:
        """The owner label for an ``Authorization`` header value; raises 401 if it fails."""
        if not self._digests:
            return ANONYMOUS
        if not authorization:
            raise errors.unauthorized(f"missing API key: send {_EXPECTED}")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != BEARER_SCHEME.lower() or not token:
            raise errors.unauthorized(
                f"malformed {AUTHORIZATION_HEADER} header: expected {_EXPECTED}"
            )
        digest = _digest(token)
        match = -1
        for index, known in enumerate(self._digests):
            if hmac.compare_digest(digest, known):
                match = index
        if match < 0:
            raise errors.unauthorized("invalid API key")
        return f"key#{match}"
