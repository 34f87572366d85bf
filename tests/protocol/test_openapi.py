"""The OpenAPI document: a valid OpenAPI 3.1 document, served by a running server under
its key, and naming exactly the routes and fields docs/protocol.md names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from agentgpt._version import __version__
from agentgpt.envhost import EnvServer
from agentgpt.protocol import routes
from agentgpt.protocol.errors import ERRORS
from agentgpt.protocol.openapi import ROUTE_ERRORS, openapi_document
from agentgpt.protocol.requests import make_request, make_vec_request

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
KEY = "openapi-key"
#: Sections that take their fields from another one ("The fields of `/make`, plus:").
INHERITS = {("post", routes.MAKE_VEC): ("post", routes.MAKE)}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document(__version__)


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def request_fields(document: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    names = {parameter["name"] for parameter in operation.get("parameters", [])}
    for media in operation.get("requestBody", {}).get("content", {}).values():
        names |= set(resolve(document, media["schema"]).get("properties", {}))
    return names


def answer_fields(document: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for media in operation["responses"]["200"]["content"].values():
        names |= set(resolve(document, media["schema"]).get("properties", {}))
    return names


def doc_sections() -> dict[tuple[str, str], str]:
    """Each route's section of docs/protocol.md by (method, path), from its heading: a
    ``###`` heading naming `GET /x` or `POST /x` (one heading may name several)."""
    text = DOCS.read_text()
    sections = {}
    headings = list(re.finditer(r"^###? .*$", text, re.M))
    for here, after in zip(headings, [*headings[1:], None], strict=True):
        if not here.group().startswith("### "):
            continue
        body = text[here.end() : after.start() if after else len(text)]
        for method, path in re.findall(r"`(GET|POST) (/[\w.]+)", here.group()):
            sections[(method.lower(), path)] = body
    return sections


def mentioned(section: str) -> set[str]:
    """The field names a section mentions: `name` in backticks, or "name": as a key."""
    return set(re.findall(r"`(\w+)`", section)) | set(re.findall(r'"(\w+)":', section))


def table_fields(section: str) -> set[str]:
    """The names in the first column of the section's tables (a field table's rows)."""
    names = set()
    for line in section.splitlines():
        match = re.match(r"\|\s*`(\w+)`\s*\|", line.strip())
        if match:
            names.add(match.group(1))
    return names


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    assert document["info"]["version"] == __version__
    validate(document)


def test_it_describes_every_route_and_every_error(document):
    assert set(document["paths"]) == set(routes.POST_ROUTES) | set(routes.GET_ROUTES)
    assert set(ROUTE_ERRORS) == set(document["paths"])
    error_schema = document["components"]["schemas"]["Error"]
    assert error_schema["properties"]["error"]["properties"]["type"]["enum"] == list(ERRORS)
    for (_, path), operation in operations(document).items():
        for status, answer in operation["responses"].items():
            if status == "200":
                continue
            for media in answer["content"].values():
                types = media["schema"]["allOf"][1]["properties"]["error"]["properties"]
                assert all(ERRORS[t].status == int(status) for t in types["type"]["enum"])
        # Only /health needs no key.
        assert ("security" in operation) == (path == routes.HEALTH)


def test_the_request_schemas_name_the_fields_clients_send(document):
    ops = operations(document)
    assert set(make_request("CartPole-v1")) <= request_fields(document, ops[("post", routes.MAKE)])
    vec = request_fields(document, ops[("post", routes.MAKE_VEC)])
    assert set(make_vec_request("CartPole-v1", 2)) <= vec


def test_the_docs_name_every_route_of_the_document_and_no_other(document):
    http_routes = set(routes.POST_ROUTES) | set(routes.GET_ROUTES)
    sections = doc_sections()
    assert {key for key in sections if key[1] in http_routes} == set(operations(document))
    # Any other route the docs give a section (a WebSocket route, which OpenAPI does not
    # describe) is one the protocol code has.
    known = {v for k, v in vars(routes).items() if k.isupper() and isinstance(v, str)}
    assert {path for _, path in sections} <= known


def test_the_docs_name_every_field_of_the_document(document):
    sections = doc_sections()
    for key, operation in operations(document).items():
        text = sections[key] + (sections[INHERITS[key]] if key in INHERITS else "")
        fields = request_fields(document, operation) | answer_fields(document, operation)
        assert fields <= mentioned(text), (key, fields - mentioned(text))


def test_every_field_in_the_docs_tables_is_in_the_document(document):
    sections = doc_sections()
    for key, operation in operations(document).items():
        fields = request_fields(document, operation) | answer_fields(document, operation)
        if key in INHERITS:
            inherited = operations(document)[INHERITS[key]]
            fields |= request_fields(document, inherited)
        assert table_fields(sections[key]) <= fields, (key, table_fields(sections[key]) - fields)


def test_a_running_server_serves_it_under_its_key(env_server):
    url = env_server(api_keys=[KEY])
    with httpx.Client(base_url=url) as client:
        assert client.get(routes.OPENAPI).status_code == 401
        answer = client.get(routes.OPENAPI, headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == openapi_document(__version__)
        assert client.get(routes.HEALTH).status_code == 200


def test_a_server_without_keys_serves_it_to_everyone(env_server):
    server = EnvServer()
    url = env_server(server)
    answer = httpx.get(f"{url}{routes.OPENAPI}")
    assert answer.status_code == 200 and answer.json()["openapi"] == "3.1.0"
