"""The transport a ``GPTAPI`` calls a SageMaker endpoint through (``invoke_endpoint``).

Every call becomes one ``POST /invocations`` of the endpoint's container (the method in
the body, as ``docs/serving.md`` describes), sent with ``sagemaker-runtime``'s
``invoke_endpoint``, so AWS authenticates it with the caller's credentials. Requests go
in MessagePack (arrays as raw bytes); answers come back in JSON, so that an error the
container returns stays readable in the ``ModelError`` SageMaker raises for it.

With ``sticky=True`` (the default) the transport opens a stateful session on its first
call and sends its id with every later one, so all its calls reach the instance that
holds its agents' contexts; :meth:`EndpointTransport.close` ends the session.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from agentgpt.remote.base_transport import BaseTransport, Encoding
from agentgpt.remote.errors import remote_error
from agentgpt.wire import (
    JSON_MEDIA_TYPE,
    MSGPACK_MEDIA_TYPE,
    WireError,
    decode,
    encode,
    media_type_from_header,
)

__all__ = ["EndpointTransport"]

_MEDIA_TYPES = {"msgpack": MSGPACK_MEDIA_TYPE, "json": JSON_MEDIA_TYPE}
#: Paths GPTAPI posts to, as the ``method`` of an ``/invocations`` body.
_ROUTE_METHODS = {"/select_action": "select_action", "/sample_action": "sample_action"}


class EndpointTransport(BaseTransport):
    """Posts the inference server's requests to the endpoint ``endpoint_name``.

    ``client``: a boto3 ``sagemaker-runtime`` client (one is made with boto3's standard
    configuration and ``region`` when None). ``encoding``: of requests. Not thread-safe.
    """

    def __init__(
        self,
        endpoint_name: str,
        client: Any = None,
        *,
        region: str | None = None,
        encoding: Encoding = "msgpack",
        sticky: bool = True,
    ) -> None:
        if encoding not in _MEDIA_TYPES:
            raise ValueError(f"encoding must be 'msgpack' or 'json', got {encoding!r}")
        if client is None:
            from agentgpt.cloud.sagemaker.clients import aws_client

            client = aws_client("sagemaker-runtime", region)
        self.client = client
        self.endpoint_name = endpoint_name
        self.base_url = f"sagemaker endpoint {endpoint_name}"
        self.encoding = encoding
        self.media_type = _MEDIA_TYPES[encoding]
        self.sticky = sticky
        #: The stateful session this transport's calls are routed by (None: not opened).
        self.session_id: str | None = None
        self.closed = False

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/invocations":
            payload = body
        elif path in _ROUTE_METHODS:
            payload = {"method": _ROUTE_METHODS[path], **body}
        else:
            raise ValueError(f"{path} has no /invocations method")
        return self._invoke(encode(payload, self.media_type))

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        if path != "/info":
            raise ValueError(f"GET {path} has no /invocations method")
        return self._invoke(encode({"method": "info", **(params or {})}, self.media_type))

    def close(self) -> None:
        """End the stateful session (when one was opened). Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.session_id is not None:
            # A session that cannot be closed expires on its own.
            with contextlib.suppress(Exception):
                self.client.invoke_endpoint(
                    EndpointName=self.endpoint_name,
                    Body=json.dumps({"requestType": "CLOSE"}).encode(),
                    ContentType=JSON_MEDIA_TYPE,
                    Accept=JSON_MEDIA_TYPE,
                    SessionId=self.session_id,
                )
            self.session_id = None

    def _invoke(self, content: bytes) -> dict[str, Any]:
        if self.closed:
            raise remote_error(None, "closed", "this client is closed")
        request: dict[str, Any] = {
            "EndpointName": self.endpoint_name,
            "Body": content,
            "ContentType": self.media_type,
            "Accept": JSON_MEDIA_TYPE,
        }
        if self.sticky:
            request["SessionId"] = self.session_id or "NEW_SESSION"
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.invoke_endpoint(**request)
        except ClientError as exc:
            raise _model_error(exc, self.endpoint_name) from None
        except BotoCoreError as exc:
            raise remote_error(
                None, "connection_error", f"cannot reach {self.base_url} ({exc})"
            ) from exc
        new_session = answer.get("NewSessionId")
        if new_session:
            self.session_id = new_session.split(";", 1)[0].strip()
        data = answer["Body"].read()
        media_type = media_type_from_header(answer.get("ContentType")) or JSON_MEDIA_TYPE
        try:
            decoded = decode(data, media_type)
        except WireError as exc:
            raise remote_error(200, "bad_response", f"undecodable answer: {exc}") from exc
        if not isinstance(decoded, dict):
            raise remote_error(200, "bad_response", f"expected a map, got {type(decoded).__name__}")
        return decoded


def _model_error(exc: Any, endpoint_name: str) -> Exception:
    """The client error a failed ``invoke_endpoint`` stands for: the container's own
    error (status, type and message) for a ``ModelError``, else SageMaker's."""
    response = exc.response
    error = response.get("Error", {})
    code = error.get("Code", "")
    if code == "ModelError":
        status = int(response.get("OriginalStatusCode") or 500)
        original = response.get("OriginalMessage") or ""
        try:
            answer = json.loads(original)
        except ValueError:
            answer = None
        inner = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(inner, dict):
            return remote_error(
                status, str(inner.get("type", "error")), str(inner.get("message", ""))
            )
        return remote_error(status, "http_error", original[:500] or f"HTTP {status}")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = error.get("Message", str(exc))
    if code in ("AccessDeniedException", "UnrecognizedClientException"):
        return remote_error(
            403, "unauthorized", f"not allowed to invoke {endpoint_name}: {message}"
        )
    if code == "ValidationError" and "not found" in message.lower():
        return remote_error(404, "not_found", f"no endpoint {endpoint_name}: {message}")
    if code in ("ThrottlingException", "ServiceUnavailable", "InternalFailure"):
        return remote_error(503, "unavailable", f"{endpoint_name}: {message}")
    return remote_error(status, code or "error", f"{endpoint_name}: {message}")
