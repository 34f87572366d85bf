"""A deliberately thin HTTP client for server tests: maps in, decoded maps out.

Unlike the product clients it never interprets answers (no spaces, no errors raised), so
tests can look at exactly what a server sent, including error bodies and headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from agentgpt import wire
from agentgpt.protocol.keys import AUTHORIZATION_HEADER, BEARER_SCHEME

__all__ = ["WireClient", "WireResponse"]


@dataclass
class WireResponse:
    """A decoded answer: HTTP status, body (a map) and headers."""

    status: int
    body: Any
    headers: Any
    media_type: str


class WireClient:
    """Sends maps in one encoding (``"json"`` or ``"msgpack"``) and decodes the answers."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        encoding: str = "json",
        timeout: float = 30.0,
    ) -> None:
        self.media_type = {"json": wire.JSON_MEDIA_TYPE, "msgpack": wire.MSGPACK_MEDIA_TYPE}[
            encoding
        ]
        headers = {"Content-Type": self.media_type, "Accept": self.media_type}
        if api_key is not None:
            headers[AUTHORIZATION_HEADER] = f"{BEARER_SCHEME} {api_key}"
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _answer(self, response: httpx.Response) -> WireResponse:
        media_type = wire.media_type_from_header(response.headers.get("content-type"))
        body = wire.decode(response.content, media_type) if media_type else response.content
        return WireResponse(response.status_code, body, response.headers, media_type or "")

    def post(
        self,
        route: str,
        body: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> WireResponse:
        """POST ``body`` encoded in this client's encoding (or raw ``content`` as given)."""
        if content is None and body is not None:
            content = wire.encode(body, self.media_type)
        return self._answer(self._http.post(route, content=content, headers=headers))

    def get(self, route: str, headers: dict[str, str] | None = None, **params: Any) -> WireResponse:
        return self._answer(self._http.get(route, params=params, headers=headers))

    def request(self, method: str, route: str, **kwargs: Any) -> WireResponse:
        return self._answer(self._http.request(method, route, **kwargs))
