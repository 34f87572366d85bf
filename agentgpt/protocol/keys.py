"""How a caller proves it holds an API key, and where a server finds its keys.

Every request but ``GET /health`` carries ``Authorization: Bearer <KEY>``; a server without
keys serves everyone. Servers read their keys from :data:`API_KEYS_ENV_VAR` (besides the
command line), so that processes started by another one can be handed keys without
showing them in a process listing.
"""

from __future__ import annotations

__all__ = ["API_KEYS_ENV_VAR", "AUTHORIZATION_HEADER", "BEARER_SCHEME"]

#: The request header that carries the key.
AUTHORIZATION_HEADER = "Authorization"
#: The authorization scheme: the header's value is ``"Bearer <KEY>"``.
BEARER_SCHEME = "Bearer"
#: Environment variable a server reads its keys from (comma separated).
API_KEYS_ENV_VAR = "AGENTGPT_API_KEYS"
