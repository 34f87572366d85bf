"""The env host's routes: one name for each, used by the server and every client.

``docs/protocol.md`` ("Routes") specifies their bodies and answers.
"""

from __future__ import annotations

__all__ = [
    "ACTION_SPACE",
    "CLOSE",
    "GET_ROUTES",
    "HEALTH",
    "MAKE",
    "MAKE_VEC",
    "OBSERVATION_SPACE",
    "OPENAPI",
    "POST_ROUTES",
    "RENDER",
    "RESET",
    "STEP",
    "STREAM",
    "HOSTS_CONNECT",
]

HEALTH = "/health"
MAKE = "/make"
MAKE_VEC = "/make_vec"
RESET = "/reset"
STEP = "/step"
RENDER = "/render"
CLOSE = "/close"
ACTION_SPACE = "/action_space"
OBSERVATION_SPACE = "/observation_space"
#: The OpenAPI 3.1 description of these routes (:mod:`agentgpt.protocol.openapi`).
OPENAPI = "/openapi.json"

#: The WebSocket route of the streaming session: the routes above as frames on one
#: connection (``docs/protocol.md``, "Streaming session").
STREAM = "/stream"
#: The WebSocket route a trainer listening for env hosts offers (``train --listen``): an
#: env host dials it and serves the streaming session over it the other way round.
HOSTS_CONNECT = "/hosts/connect"

#: Routes that take a body (POST).
POST_ROUTES = (MAKE, MAKE_VEC, RESET, STEP, RENDER, CLOSE)
#: Routes read with GET (and HEAD); the space routes take ``?env_key=``.
GET_ROUTES = (HEALTH, ACTION_SPACE, OBSERVATION_SPACE, OPENAPI)
