"""The HTTP service kit: what every agentgpt server shares, whatever its routes do.

The env server (:mod:`agentgpt.envhost`) is built on it, and any other server follows the
same conventions by using it too, so that one client library, one error vocabulary and one
set of operating habits fit them all:

- :mod:`~agentgpt.service.app`: :func:`~agentgpt.service.app.service_app`, a Starlette app
  from handlers on plain maps (``handler(owner, payload) -> payload``), with auth, the body
  limit, content negotiation and error rendering around each.
- :mod:`~agentgpt.service.keys`: :class:`~agentgpt.service.keys.ApiKeys` (bearer keys
  checked in constant time, callers known by an owner label, never by their key) and keys
  read from ``AGENTGPT_API_KEYS`` or a file.
- :mod:`~agentgpt.service.negotiation`: the request headers read and the encoding (JSON
  or MessagePack) of each body and answer.
- :mod:`~agentgpt.service.bodies`: a request body as a map, refused past the size limit.
- :mod:`~agentgpt.service.errors`: :class:`~agentgpt.service.errors.ApiError` and its
  ``{"error": {...}}`` wire form, with statuses from the protocol's vocabulary
  (:data:`agentgpt.protocol.errors.ERRORS`).
- :mod:`~agentgpt.service.browsers`: the middleware that keeps web pages out (``Host``,
  ``Origin`` and ``Content-Type`` checks) and CORS for the origins an operator allows.
- :mod:`~agentgpt.service.connections`: limits on connections before any request is
  checked (request-head timeout and size, idle keep-alive, connections in total and per
  client address), enforced inside uvicorn's HTTP protocol.
- :mod:`~agentgpt.service.serving`: the uvicorn settings (limits, TLS) and listening
  sockets production and tests share, and the rule that a server without API keys listens
  on loopback only.
- :mod:`~agentgpt.service.threaded`: any ASGI app served by a real uvicorn server in a
  background thread (the trainer's listener for dialled-in hosts, tests, notebooks);
  :mod:`~agentgpt.service.testing` re-exports it for tests.

The kit never imports torch, and imports nothing from a particular server.
"""
