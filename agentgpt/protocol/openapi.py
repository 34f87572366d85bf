"""The protocol as an OpenAPI 3.1 document, built from the code that defines it.

An env server answers ``GET /openapi.json`` with :func:`openapi_document`. Its routes come
from :mod:`~agentgpt.protocol.routes`, its field names from
:mod:`~agentgpt.protocol.fields`, its bounds and choices from
:mod:`~agentgpt.protocol.requests` and :mod:`~agentgpt.protocol.autoreset`, and its error
answers from the vocabulary (:data:`~agentgpt.protocol.errors.ERRORS`), so it cannot drift
from what the server checks. ``docs/protocol.md`` is the prose; a test checks that both
name the same routes and fields.

Request schemas are exact about the shape of a request (types, bounds, required fields):
a body they refuse, the server refuses with a 4xx. What depends on the env (whether an
action fits its space, which kwargs its constructor takes) or on the server's settings
(its limits, which kwargs it passes) is checked by the server and described in prose.
Values inside answers (observations, spaces, infos) are described, not typed: their
shape follows the env (``docs/protocol.md``, "Values" and "Spaces").
"""

from __future__ import annotations

from typing import Any

from agentgpt.protocol import fields, routes
from agentgpt.protocol.autoreset import AUTORESET_MODES
from agentgpt.protocol.errors import ERRORS
from agentgpt.protocol.requests import (
    KWARG_KEY_PATTERN,
    MAKE_AUTORESET_MODE,
    MAKE_VEC_AUTORESET_MODE,
    MAX_ENV_NAME_LENGTH,
    MAX_RENDER_MODE_LENGTH,
    RENDER_MODE_PATTERN,
    RESERVED_KWARGS,
    SEED_LIMIT,
    VECTORIZATION_MODES,
    make_request,
    make_vec_request,
)
from agentgpt.wire import JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE

__all__ = ["OPENAPI_VERSION", "ROUTE_ERRORS", "openapi_document"]

OPENAPI_VERSION = "3.1.0"
_MEDIA_TYPES = (JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE)
_BEARER = "bearer"

#: The errors particular to each route, beyond those any route may answer: a bad body
#: (POST routes), a missing key (every route but ``/health``), a server bug, and any kind
#: this table does not place.
ROUTE_ERRORS: dict[str, tuple[str, ...]] = {
    routes.HEALTH: (),
    routes.OPENAPI: (),
    routes.MAKE: (
        "invalid_argument",
        "unknown_env",
        "unsupported_space",
        "too_many_envs",
        "env_error",
    ),
    routes.MAKE_VEC: (
        "invalid_argument",
        "unknown_env",
        "unsupported_space",
        "too_many_envs",
        "too_many_processes",
        "env_error",
    ),
    routes.RESET: ("invalid_argument", "env_not_found", "ambiguous_env", "env_error"),
    routes.STEP: (
        "invalid_argument",
        "invalid_action",
        "env_not_found",
        "ambiguous_env",
        "reset_needed",
        "env_error",
    ),
    routes.RENDER: ("invalid_argument", "env_not_found", "ambiguous_env", "env_error"),
    routes.CLOSE: ("invalid_argument", "env_not_found", "ambiguous_env"),
    routes.ACTION_SPACE: ("invalid_argument", "env_not_found", "ambiguous_env"),
    routes.OBSERVATION_SPACE: ("invalid_argument", "env_not_found", "ambiguous_env"),
}
#: Errors that never answer a route of the document (unknown paths and methods, and the
#: inference server's own), and those every route may answer, by what a request has.
_NOT_FOR_ROUTES = ("not_found", "method_not_allowed", "session_forbidden", "too_many_agents")
_FOR_BODIES = ("bad_request", "payload_too_large")
_FOR_KEYS = ("unauthorized",)
_FOR_ALL = ("internal_error",)


def _placed() -> set[str]:
    placed = {name for names in ROUTE_ERRORS.values() for name in names}
    return placed | set(_NOT_FOR_ROUTES + _FOR_BODIES + _FOR_KEYS + _FOR_ALL)


# ---------------------------------------------------------------- schemas


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or ``null``."""
    return {"anyOf": [schema, {"type": "null"}]}


def _described(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(schema or {}), "description": description}


_SEED = {"type": "integer", "minimum": 0, "maximum": SEED_LIMIT - 1}
_ENV_KEY = {"type": "string", "minLength": 1}
_RENDER_MODE = {
    "type": "string",
    "pattern": RENDER_MODE_PATTERN,
    "maxLength": MAX_RENDER_MODE_LENGTH,
    "not": {"const": "human"},
}
_ENV_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_ENV_NAME_LENGTH}
_ANY: dict[str, Any] = {}


def _choice(choices: Any, default: str, description: str) -> dict[str, Any]:
    return _described(description, {"enum": [*choices, None], "default": default})


def _make_properties(autoreset_default: str) -> dict[str, Any]:
    return {
        fields.ENV_NAME: _described("A Gymnasium id or a name the operator registered.", _ENV_NAME),
        fields.ENV_ID: _described(f"An alias of {fields.ENV_NAME}.", _ENV_NAME),
        fields.SEED: _described(
            "Seeds the first reset that gives no seed, and the server's action space.",
            _nullable(_SEED),
        ),
        fields.KWARGS: _described(
            "Keyword arguments of the env's constructor. Keys that name code, another env,"
            " a file or an address, and values of the form 'module:attribute', are refused"
            " unless the operator allows them (docs/protocol.md, 'Env kwargs').",
            _nullable(
                {
                    "type": "object",
                    "propertyNames": {
                        "pattern": KWARG_KEY_PATTERN,
                        "not": {"enum": list(RESERVED_KWARGS)},
                    },
                    "properties": {fields.RENDER_MODE: _nullable(_RENDER_MODE)},
                }
            ),
        ),
        fields.RENDER_MODE: _described(
            "A render mode of the env such as 'rgb_array' or 'ansi' ('human' is refused).",
            _nullable(_RENDER_MODE),
        ),
        fields.AUTORESET_MODE: _choice(
            AUTORESET_MODES, autoreset_default, "What happens after an episode ends."
        ),
    }


def _named_env(properties: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A make body: ``env_name`` or its alias is required (either may be null when the
    other names the env)."""
    return {
        "type": "object",
        "properties": {**properties, **extra},
        "anyOf": [
            {"required": [fields.ENV_NAME], "properties": {fields.ENV_NAME: _ENV_NAME}},
            {"required": [fields.ENV_ID], "properties": {fields.ENV_ID: _ENV_NAME}},
        ],
    }


def _with_null_names(properties: dict[str, Any]) -> dict[str, Any]:
    for name in (fields.ENV_NAME, fields.ENV_ID):
        properties[name] = _described(properties[name]["description"], _nullable(_ENV_NAME))
    return properties


_ENV_KEY_PROPERTY = {
    fields.ENV_KEY: _described(
        "The env, as /make or /make_vec answered; may be left out (or null) when the"
        " caller's key owns exactly one env.",
        _nullable(_ENV_KEY),
    )
}


def _request_schemas() -> dict[str, dict[str, Any]]:
    make = _named_env(_with_null_names(_make_properties(MAKE_AUTORESET_MODE)), {})
    make_vec = _named_env(
        _with_null_names(_make_properties(MAKE_VEC_AUTORESET_MODE)),
        {
            fields.NUM_ENVS: _described(
                "The number of sub-envs.", {"type": "integer", "minimum": 1}
            ),
            fields.VECTORIZATION_MODE: _choice(
                VECTORIZATION_MODES,
                VECTORIZATION_MODES[0],
                "'sync': sub-envs in the server's process; 'async': one process each.",
            ),
        },
    )
    make_vec["required"] = [fields.NUM_ENVS]
    reset = {
        "type": "object",
        "properties": {
            **_ENV_KEY_PROPERTY,
            fields.SEED: _described(
                "A seed; for a vector env also a list with one seed (or null) per sub-env.",
                _nullable({"anyOf": [_SEED, {"type": "array", "items": _nullable(_SEED)}]}),
            ),
            fields.OPTIONS: _described(
                "Passed to the env's reset. For a vector env, its reset_mask (a list of"
                " num_envs booleans with at least one true) selects the sub-envs to reset.",
                _nullable({"type": "object"}),
            ),
        },
    }
    step = {
        "type": "object",
        "properties": {
            **_ENV_KEY_PROPERTY,
            fields.ACTION: _described(
                "A value of the action space (a list in agents order for a multi-agent env).",
                _ANY,
            ),
        },
        "required": [fields.ACTION],
    }
    env_key_only = {"type": "object", "properties": dict(_ENV_KEY_PROPERTY)}
    # Examples: what the clients' builders send (the env_key left out: the caller's only env).
    make["examples"] = [make_request("CartPole-v1", seed=42)]
    make_vec["examples"] = [make_vec_request("CartPole-v1", 2, seed=42)]
    reset["examples"] = [{fields.SEED: 42}]
    step["examples"] = [{fields.ACTION: 0}]
    env_key_only["examples"] = [{}]
    return {
        routes.MAKE: make,
        routes.MAKE_VEC: make_vec,
        routes.RESET: reset,
        routes.STEP: step,
        routes.RENDER: env_key_only,
        routes.CLOSE: env_key_only,
    }


_SPACE = _described(
    "A space: a map with its 'type' (Box, Discrete, ...) and that type's fields"
    " (docs/protocol.md, 'Spaces').",
    {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}},
)
_SPACES = {"anyOf": [_SPACE, {"type": "array", "items": _SPACE}]}
_TYPES = _described(
    "Type notes for fields whose Python or NumPy types the values lose (docs/protocol.md,"
    " 'Type notes'); left out when none is needed.",
    {"type": "object"},
)
_INFO = _described(
    "A map (a list of maps or nulls in agents order for a multi-agent env).",
    {"anyOf": [{"type": "object"}, {"type": "array"}]},
)


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


def _answer_schemas() -> dict[str, dict[str, Any]]:
    made_properties = {
        fields.ENV_KEY: _described("The new env's key.", {"type": "string"}),
        fields.NUM_ENVS: {"type": "integer", "minimum": 1},
        fields.OBSERVATION_SPACE: _described(
            "One sub-env's space, or a list of spaces in agents order.", _SPACES
        ),
        fields.ACTION_SPACE: _described(
            "One sub-env's space, or a list of spaces in agents order.", _SPACES
        ),
        fields.AGENTS: _described(
            "The possible agents of a multi-agent env, else null.",
            _nullable({"type": "array", "items": {"type": "string"}}),
        ),
        fields.AUTORESET_MODE: {"enum": list(AUTORESET_MODES)},
        fields.INCARNATION: _described(
            "The server process's random id; it changes when the server restarts.",
            {"type": "string"},
        ),
        fields.METADATA: _described("The env's metadata as plain data.", {"type": "object"}),
    }
    made = _object(made_properties, [name for name in made_properties if name != fields.METADATA])
    reset = _object(
        {
            fields.OBSERVATION: _described("A value of the observation space.", _ANY),
            fields.INFO: _INFO,
            fields.TYPES: _TYPES,
        },
        [fields.OBSERVATION, fields.INFO],
    )
    step_values = {
        fields.OBSERVATION: _described("A value of the observation space.", _ANY),
        fields.REWARD: _described(
            "A float (an array of them for a vector env, a list in agents order for a"
            " multi-agent env).",
            _ANY,
        ),
        fields.TERMINATED: _described("A boolean, or an array or list of them.", _ANY),
        fields.TRUNCATED: _described("A boolean, or an array or list of them.", _ANY),
        fields.INFO: _INFO,
        fields.TYPES: _TYPES,
    }
    step = _object(step_values, [name for name in step_values if name != fields.TYPES])
    render = _object(
        {
            fields.RENDER: _described(
                "What the env's render() returned: a frame, a string, a list of them, or"
                " null without a render mode.",
                _ANY,
            ),
            fields.TYPES: _TYPES,
        },
        [fields.RENDER],
    )
    closed = _object(
        {fields.CLOSED: {"const": True}, fields.ENV_KEY: {"type": "string"}},
        [fields.CLOSED, fields.ENV_KEY],
    )
    health = _object(
        {
            fields.STATUS: {"const": "ok"},
            fields.VERSION: {"type": "string"},
            fields.INCARNATION: {"type": "string"},
        },
        [fields.STATUS, fields.VERSION, fields.INCARNATION],
    )
    return {
        routes.HEALTH: health,
        routes.OPENAPI: _described("This document.", {"type": "object"}),
        routes.MAKE: made,
        routes.MAKE_VEC: made,
        routes.RESET: reset,
        routes.STEP: step,
        routes.RENDER: render,
        routes.CLOSE: closed,
        routes.ACTION_SPACE: _object({fields.ACTION_SPACE: _SPACES}, [fields.ACTION_SPACE]),
        routes.OBSERVATION_SPACE: _object(
            {fields.OBSERVATION_SPACE: _SPACES}, [fields.OBSERVATION_SPACE]
        ),
    }


# ---------------------------------------------------------------- operations

_SUMMARIES = {
    routes.HEALTH: "Whether the server is up, its version and incarnation (no key needed).",
    routes.OPENAPI: "This OpenAPI document.",
    routes.MAKE: "Make a single-agent or multi-agent env.",
    routes.MAKE_VEC: "Make a Gymnasium vector env of num_envs sub-envs.",
    routes.RESET: "Reset an env.",
    routes.STEP: "Step an env with an action.",
    routes.RENDER: "Render an env.",
    routes.CLOSE: "Close an env and free its slots.",
    routes.ACTION_SPACE: "An env's action space.",
    routes.OBSERVATION_SPACE: "An env's observation space.",
}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {media_type: {"schema": schema} for media_type in _MEDIA_TYPES}


def _error_responses(route: str, *, body: bool, keyed: bool) -> dict[str, Any]:
    """The route's error answers by status, each naming its error types."""
    names = list(ROUTE_ERRORS[route])
    if body:
        names += _FOR_BODIES
    if keyed:
        names += _FOR_KEYS
    names += _FOR_ALL
    placed = _placed()
    names += [name for name in ERRORS if name not in placed]  # kinds added later
    by_status: dict[int, list[str]] = {}
    for name in dict.fromkeys(names):
        by_status.setdefault(ERRORS[name].status, []).append(name)
    responses = {}
    for status in sorted(by_status):
        types = by_status[status]
        responses[str(status)] = {
            "description": "; ".join(f"{name}: {ERRORS[name].meaning}" for name in types),
            "content": _content(
                {
                    "allOf": [
                        _ref("Error"),
                        {"properties": {"error": {"properties": {"type": {"enum": types}}}}},
                    ]
                }
            ),
        }
    return responses


def _operation(route: str, answer: dict[str, Any], **parts: Any) -> dict[str, Any]:
    keyed = route != routes.HEALTH
    operation: dict[str, Any] = {
        "operationId": route.strip("/").replace(".", "_"),
        "summary": _SUMMARIES[route],
        **parts,
        "responses": {
            "200": {"description": "The answer.", "content": _content(answer)},
            **_error_responses(route, body="requestBody" in parts, keyed=keyed),
        },
    }
    if not keyed:
        operation["security"] = []
    return operation


#: Component names of the request and answer schemas, by route.
_REQUEST_NAMES = {
    routes.MAKE: "MakeRequest",
    routes.MAKE_VEC: "MakeVecRequest",
    routes.RESET: "ResetRequest",
    routes.STEP: "StepRequest",
    routes.RENDER: "EnvKeyRequest",
    routes.CLOSE: "EnvKeyRequest",
}
_ANSWER_NAMES = {
    routes.HEALTH: "HealthAnswer",
    routes.OPENAPI: "OpenApiAnswer",
    routes.MAKE: "MadeAnswer",
    routes.MAKE_VEC: "MadeAnswer",
    routes.RESET: "ResetAnswer",
    routes.STEP: "StepAnswer",
    routes.RENDER: "RenderAnswer",
    routes.CLOSE: "ClosedAnswer",
    routes.ACTION_SPACE: "ActionSpaceAnswer",
    routes.OBSERVATION_SPACE: "ObservationSpaceAnswer",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an env server of ``version`` (its ``info.version``)."""
    schemas: dict[str, Any] = {}
    for route, schema in _request_schemas().items():
        schemas[_REQUEST_NAMES[route]] = schema
    for route, schema in _answer_schemas().items():
        schemas[_ANSWER_NAMES[route]] = schema
    paths: dict[str, Any] = {}
    for route in routes.POST_ROUTES:
        paths[route] = {
            "post": _operation(
                route,
                _ref(_ANSWER_NAMES[route]),
                requestBody={
                    # An empty body is the empty map, which is all some routes need.
                    "required": route in (routes.MAKE, routes.MAKE_VEC, routes.STEP),
                    "content": _content(_ref(_REQUEST_NAMES[route])),
                },
            )
        }
    for route in routes.GET_ROUTES:
        parts: dict[str, Any] = {}
        if route in (routes.ACTION_SPACE, routes.OBSERVATION_SPACE):
            parts["parameters"] = [
                {
                    "name": fields.ENV_KEY,
                    "in": "query",
                    "required": False,
                    "description": "The env, as /make or /make_vec answered; may be left"
                    " out when the caller's key owns exactly one env.",
                    "schema": _ENV_KEY,
                }
            ]
        paths[route] = {"get": _operation(route, _ref(_ANSWER_NAMES[route]), **parts)}
    error_types = list(ERRORS)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "AgentGPT env server",
            "version": version,
            "description": (
                "Remote Gymnasium and PettingZoo envs over HTTP. Bodies are JSON or"
                " MessagePack maps; docs/protocol.md is the full reference."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                _BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key of the server (a server without keys"
                    " accepts every request).",
                }
            },
            "schemas": {
                **schemas,
                "Error": _object(
                    {
                        "error": _object(
                            {
                                "type": {"enum": error_types},
                                "message": {"type": "string"},
                                "traceback": _described(
                                    "Only from a server run with --debug.", {"type": "string"}
                                ),
                            },
                            ["type", "message"],
                        )
                    },
                    ["error"],
                ),
            },
        },
        "security": [{_BEARER: []}],
    }
