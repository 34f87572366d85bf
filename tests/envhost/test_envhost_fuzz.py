"""Schemathesis against a real server on loopback, from the server's own OpenAPI document.

Bodies that fit the document and bodies that break it are sent to every route; every
answer must be documented (its status, its schema, its media type), a body the document
refuses must be refused with a 4xx, and the only 5xx allowed is ``env_error``: the env's
own code failing on what a client sent (unknown kwargs, odd reset options). The run is
bounded (a few examples per route) and derandomized, so it is the same on every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, reject, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from agentgpt import wire
from agentgpt.envhost import EnvServer, run_server_in_thread
from agentgpt.protocol import routes

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES_PER_ROUTE = 12


@pytest.fixture(scope="module")
def fuzzed_url():
    # No async vector env (max_processes=0) and one env per key: the fuzzer never starts a
    # process, and the one CartPole its /make example makes is the caller's only env, which
    # the fuzzed /reset, /step and /render bodies then reach (until /close closes it).
    server = EnvServer(api_keys=[KEY], max_processes=0, max_envs_per_key=1)
    with run_server_in_thread(server) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(fuzzed_url):
    schema = schemathesis.openapi.from_url(f"{fuzzed_url}{routes.OPENAPI}", headers=AUTH)
    schema.config.update(base_url=fuzzed_url, headers=AUTH)
    schema.config.generation.update(max_examples=EXAMPLES_PER_ROUTE, deterministic=True)
    return schema


@schemathesis.serializer(wire.MSGPACK_MEDIA_TYPE)
def to_msgpack(ctx, value: Any) -> bytes:
    try:
        return wire.encode(value, wire.MSGPACK_MEDIA_TYPE)
    except (OverflowError, TypeError, ValueError):
        reject()  # a value MessagePack cannot carry (an integer of 2**64 or more)


def plain(value: Any) -> Any:
    """A decoded answer with its typed arrays as lists, for the schema checks."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


@schemathesis.deserializer(wire.MSGPACK_MEDIA_TYPE)
def from_msgpack(ctx, response) -> Any:
    return plain(wire.decode(response.content, wire.MSGPACK_MEDIA_TYPE))


def only_env_errors_are_5xx(ctx, response, case):
    """A 5xx is the env's own failure (``env_error``), never the server's."""
    if response.status_code >= 500:
        content_type = response.headers.get("content-type") or [wire.JSON_MEDIA_TYPE]
        media_type = wire.media_type_from_header(content_type[0]) or wire.JSON_MEDIA_TYPE
        body = wire.decode(response.content, media_type)
        error_type = body.get("error", {}).get("type") if isinstance(body, dict) else None
        assert error_type == "env_error", f"{response.status_code} {body!r}"


api = schemathesis.pytest.from_fixture("api_schema")


@api.parametrize()
@settings(
    max_examples=EXAMPLES_PER_ROUTE,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented_and_no_request_breaks_the_server(case):
    case.call_and_validate(
        headers=AUTH,
        checks=[
            only_env_errors_are_5xx,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ],
    )
