"""Browser safety (``BrowserGuard``): Host, Origin and Content-Type checks, on a real server.

A web page can make a browser send requests to a loopback server; with DNS rebinding it
can even read the answers. These tests send exactly what such a page's browser would
(a foreign ``Host``, an ``Origin``, a ``text/plain`` body) and what the project's clients
send, to servers with and without keys.
"""

from __future__ import annotations

import contextlib

import httpx
import pytest

from agentgpt import wire
from agentgpt.service.app import service_app
from agentgpt.service.browsers import browser_policy, host_name
from agentgpt.service.keys import ApiKeys
from agentgpt.service.testing import serve_in_thread

KEY = "browsers-key"
JSON = wire.JSON_MEDIA_TYPE
MSGPACK = wire.MSGPACK_MEDIA_TYPE
PAGE = "https://page.example"


async def echo(owner, payload):
    return {"payload": payload}


def make_app(keys=(), **policy):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield

    return service_app(
        post={"/echo": echo},
        get={"/query": echo},
        public={"/health": lambda: {"status": "ok"}},
        keys=ApiKeys(list(keys)),
        max_body_bytes=1024,
        debug=False,
        lifespan=lifespan,
        browsers=browser_policy(bool(keys), **policy) if policy else None,
    )


@pytest.fixture(scope="module")
def keyless():
    with serve_in_thread(make_app()) as url:
        yield url


def post(url, body=b'{"a": 1}', **headers):
    return httpx.post(f"{url}/echo", content=body, headers=headers, timeout=10)


def assert_refused(response, status, error_type):
    assert response.status_code == status, response.text
    assert response.json() == {
        "error": {"type": error_type, "message": response.json()["error"]["message"]}
    }


def test_host_names_are_read_without_port_or_brackets():
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("[::1]") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("example.com.") == "example.com"


# ---------------------------------------------------------------- Host


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "10.0.0.5:8000"]
)
def test_a_keyless_server_refuses_foreign_hosts(keyless, host):
    """DNS rebinding: a page's own domain, now resolving to loopback, is in its Host."""
    assert_refused(post(keyless, Host=host, **{"Content-Type": JSON}), 403, "host_not_allowed")
    answer = httpx.get(f"{keyless}/health", headers={"Host": host}, timeout=10)
    assert_refused(answer, 403, "host_not_allowed")


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:1234", "127.0.0.1:9", "127.0.0.2", "[::1]:80", "[::1]"]
)
def test_a_keyless_server_answers_to_loopback_names(keyless, host):
    answer = post(keyless, Host=host, **{"Content-Type": JSON})
    assert answer.status_code == 200 and answer.json() == {"payload": {"a": 1}}


def test_the_operator_can_allow_more_hosts():
    with serve_in_thread(make_app(allowed_hosts=["envs.lan", "10.0.0.5"])) as url:
        for host in ("envs.lan:8000", "10.0.0.5", "localhost"):
            assert post(url, Host=host, **{"Content-Type": JSON}).status_code == 200
        assert_refused(
            post(url, Host="evil.example", **{"Content-Type": JSON}), 403, "host_not_allowed"
        )
    with serve_in_thread(make_app(allowed_hosts=["*"])) as url:
        assert post(url, Host="anything.example", **{"Content-Type": JSON}).status_code == 200


def test_a_server_with_keys_answers_to_any_host_unless_told_otherwise():
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": JSON}
    with serve_in_thread(make_app(keys=[KEY])) as url:
        assert post(url, Host="envs.example.com", **auth).status_code == 200
    with serve_in_thread(make_app(keys=[KEY], allowed_hosts=["envs.example.com"])) as url:
        assert post(url, Host="envs.example.com", **auth).status_code == 200
        # Refused before the key is looked at.
        assert_refused(post(url, Host="other.example", **auth), 403, "host_not_allowed")


# ---------------------------------------------------------------- Origin


@pytest.mark.parametrize("origin", [PAGE, "null", "http://localhost:3000"])
def test_requests_from_web_pages_are_refused(keyless, origin):
    answer = post(keyless, Origin=origin, **{"Content-Type": JSON})
    assert_refused(answer, 403, "origin_not_allowed")
    assert "access-control-allow-origin" not in answer.headers


def test_an_allowed_origin_may_call_with_cors():
    with serve_in_thread(make_app(allowed_origins=[PAGE])) as url:
        answer = post(url, Origin=PAGE, **{"Content-Type": JSON})
        assert answer.status_code == 200 and answer.json() == {"payload": {"a": 1}}
        assert answer.headers["access-control-allow-origin"] == PAGE
        # The browser asks first before it sends JSON or an Authorization header.
        preflight = httpx.options(
            f"{url}/echo",
            headers={
                "Origin": PAGE,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
            timeout=10,
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == PAGE
        assert "POST" in preflight.headers["access-control-allow-methods"]
        # Any other page is still refused.
        assert_refused(
            post(url, Origin="https://other.example", **{"Content-Type": JSON}),
            403,
            "origin_not_allowed",
        )


# ---------------------------------------------------------------- Content-Type


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain, application/json",
    ],
)
def test_bodies_a_page_can_send_without_asking_are_415(keyless, content_type):
    assert_refused(post(keyless, **{"Content-Type": content_type}), 415, "unsupported_media_type")


def test_a_body_without_a_content_type_is_415(keyless):
    assert_refused(post(keyless), 415, "unsupported_media_type")
    chunked = httpx.post(f"{keyless}/echo", content=iter([b'{"a": 1}']), timeout=10)
    assert_refused(chunked, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type", [JSON, "application/json; charset=utf-8", MSGPACK, "application/x-msgpack"]
)
def test_json_and_msgpack_bodies_are_read(keyless, content_type):
    media_type = wire.media_type_from_header(content_type)
    body = wire.encode({"a": 1}, media_type)
    answer = post(keyless, body, **{"Content-Type": content_type})
    assert answer.status_code == 200
    assert wire.decode(answer.content, media_type) == {"payload": {"a": 1}}


def test_requests_without_a_body_need_no_content_type(keyless):
    assert post(keyless, b"").json() == {"payload": {}}
    assert httpx.get(f"{keyless}/query?x=1", timeout=10).json() == {"payload": {"x": "1"}}


def test_a_refusal_is_in_the_encoding_asked_for(keyless):
    answer = post(keyless, Origin=PAGE, **{"Content-Type": MSGPACK, "Accept": MSGPACK})
    assert answer.status_code == 403
    assert answer.headers["content-type"] == MSGPACK
    assert wire.decode(answer.content, MSGPACK)["error"]["type"] == "origin_not_allowed"


def test_a_web_page_cannot_make_envs_on_a_keyless_env_server():
    """What a page's browser sends blind: each request is refused and no env is made."""
    from agentgpt.envhost.server import EnvServer

    server = EnvServer()
    body = b'{"env_name": "CartPole-v1", "num_envs": 2, "vectorization_mode": "async"}'
    with serve_in_thread(server.app) as url:
        attempts = [
            {"Origin": PAGE, "Host": "rebound.page.example", "Content-Type": "text/plain"},
            {"Host": "rebound.page.example", "Content-Type": JSON},
            {"Origin": PAGE, "Content-Type": JSON},
            {"Content-Type": "text/plain"},
        ]
        statuses = [
            httpx.post(f"{url}/make_vec", content=body, headers=headers, timeout=30).status_code
            for headers in attempts
        ]
        assert statuses == [403, 403, 403, 415]
        assert list(server.table.sessions()) == []
