"""The service kit's app (``service_app``) with plain handlers, on a real uvicorn server.

The env server's routes are covered by the ``test_envhost_*`` files; these tests pin what
the kit adds around any handler: auth, encodings, the body limit at its exact edge, 404/405
in the protocol's format, answers that cannot be encoded, errors that escape a route,
client disconnects and the lifespan.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time

import httpx
import pytest
from wire_client import WireClient

from agentgpt import wire
from agentgpt.service.app import service_app
from agentgpt.service.errors import api_error
from agentgpt.service.keys import ANONYMOUS, ApiKeys
from agentgpt.service.testing import serve_in_thread

KEY = "app-key"
LIMIT = 64
MSGPACK = wire.MSGPACK_MEDIA_TYPE
JSON = wire.JSON_MEDIA_TYPE


async def echo(owner, payload):
    return {"owner": owner, "payload": payload}


async def unencodable(owner, payload):
    return {"value": object()}


def make_app(*, keys=(KEY,), health=None, lifespan=None, debug=False, **options):
    @contextlib.asynccontextmanager
    async def no_lifespan(app):
        yield

    return service_app(
        post={"/echo": echo, "/unencodable": unencodable},
        get={"/query": echo},
        public={"/health": health or (lambda: {"status": "ok"})},
        keys=ApiKeys(list(keys)),
        max_body_bytes=LIMIT,
        debug=debug,
        lifespan=lifespan or no_lifespan,
        **options,
    )


@pytest.fixture(scope="module")
def url():
    with serve_in_thread(make_app()) as base_url:
        yield base_url


def assert_error(answer, status, error_type, media_type):
    assert answer.status == status, answer.body
    assert answer.media_type == media_type
    assert answer.body == {
        "error": {"type": error_type, "message": answer.body["error"]["message"]}
    }


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_handlers_get_the_owner_and_the_decoded_body(url, encoding):
    with WireClient(url, KEY, encoding=encoding) as c:
        answer = c.post("/echo", {"a": [1, 2], "b": None})
        assert answer.status == 200
        assert answer.media_type == c.media_type
        owner = answer.body["owner"]
        assert owner and KEY not in owner  # an opaque id, never the key itself
        assert answer.body["payload"] == {"a": [1, 2], "b": None}
        # An empty body is an empty map.
        assert c.post("/echo").body == {"owner": owner, "payload": {}}


def test_accept_chooses_the_answer_encoding(url):
    with WireClient(url, KEY) as c:
        answer = c.post(
            "/echo",
            content=b'{"x": 1}',
            headers={"Content-Type": JSON, "Accept": MSGPACK},
        )
        assert answer.status == 200 and answer.media_type == MSGPACK
        assert answer.body["payload"] == {"x": 1}
        # No Accept: the answer is in the body's encoding.
        raw = httpx.post(
            f"{url}/echo",
            content=wire.encode({"y": 2}, MSGPACK),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": MSGPACK},
        )
        assert raw.headers["content-type"] == MSGPACK
        assert wire.decode(raw.content, MSGPACK)["payload"] == {"y": 2}
        # No body and neither header: a JSON answer.
        bare = httpx.post(f"{url}/echo", headers={"Authorization": f"Bearer {KEY}"})
        assert bare.headers["content-type"] == JSON and bare.json()["payload"] == {}


def test_get_handlers_get_the_query_parameters(url):
    with WireClient(url, KEY, encoding="msgpack") as c:
        answer = c.request("GET", "/query?env_key=a&env_key=b&empty=")
        assert answer.status == 200
        assert answer.body["payload"] == {"env_key": "b", "empty": ""}  # the last value wins


def test_every_route_but_health_needs_the_key(url):
    with WireClient(url, encoding="msgpack") as c:
        for answer in (c.post("/echo", {}), c.get("/query")):
            assert_error(answer, 401, "unauthorized", MSGPACK)
            assert answer.headers["www-authenticate"] == "Bearer"
        health = c.get("/health")
        assert health.status == 200 and health.body == {"status": "ok"}


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {KEY}-wrong", f"Basic {KEY}", "Bearer", f"{KEY}"],
)
def test_a_wrong_or_malformed_key_is_401_with_www_authenticate(url, authorization):
    with WireClient(url, encoding="msgpack") as c:
        answer = c.post("/echo", {}, headers={"Authorization": authorization})
    assert_error(answer, 401, "unauthorized", MSGPACK)
    assert answer.headers["www-authenticate"] == "Bearer"
    assert KEY not in answer.body["error"]["message"]


def test_keys_are_told_apart_and_the_scheme_is_case_insensitive():
    lower_case = {"Authorization": "bearer  second-key"}
    with (
        serve_in_thread(make_app(keys=("first-key", "second-key"))) as base_url,
        WireClient(base_url, "first-key") as c,
    ):
        first = c.post("/echo").body["owner"]
        second = c.post("/echo", headers=lower_case).body["owner"]
    assert first != second
    assert "first-key" not in first and "second-key" not in second


def test_without_keys_every_caller_is_the_anonymous_owner():
    with (
        serve_in_thread(make_app(keys=())) as base_url,
        WireClient(base_url) as no_key,
        WireClient(base_url, "any-key") as some_key,
    ):
        assert no_key.post("/echo", {"a": 1}).body == {"owner": ANONYMOUS, "payload": {"a": 1}}
        assert some_key.get("/query", x="1").body == {"owner": ANONYMOUS, "payload": {"x": "1"}}


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_body_that_does_not_decode_or_is_not_a_map_is_400(url, encoding):
    with WireClient(url, KEY, encoding=encoding) as c:
        garbled = c.post("/echo", content=b"\xc1{not a body")
        assert_error(garbled, 400, "bad_request", c.media_type)
        kind = "JSON" if encoding == "json" else "MessagePack"
        assert garbled.body["error"]["message"].startswith(f"the body is not valid {kind}: ")
        a_list = c.post("/echo", [1, 2])
        assert_error(a_list, 400, "bad_request", c.media_type)
        assert a_list.body["error"]["message"] == (
            "the body must be a map (a JSON object), got list"
        )


def test_an_answer_that_cannot_be_encoded_is_an_internal_error_by_default(url, caplog):
    with caplog.at_level(logging.ERROR, logger="agentgpt.service"), WireClient(url, KEY) as c:
        answer = c.post("/unencodable")
    assert_error(answer, 500, "internal_error", JSON)
    assert "traceback" not in answer.body["error"]
    assert [r.name for r in caplog.records] == ["agentgpt.service"]


def test_the_server_chooses_the_error_for_an_answer_that_cannot_be_encoded(caplog):
    def unencodable_answer(exc):
        return api_error("env_error", f"cannot encode: {type(exc).__name__}")

    service_log = logging.getLogger("tests.service")
    app = make_app(unencodable=unencodable_answer, logger=service_log)
    with (
        caplog.at_level(logging.ERROR, logger="tests.service"),
        serve_in_thread(app) as base_url,
        WireClient(base_url, KEY, encoding="msgpack") as c,
    ):
        answer = c.post("/unencodable")
        assert c.post("/echo", {"next": 1}).body["payload"] == {"next": 1}
    assert_error(answer, 500, "env_error", MSGPACK)
    assert answer.body["error"]["message"].startswith("cannot encode: ")
    assert [r.name for r in caplog.records] == ["tests.service"]


def test_the_body_limit_must_be_positive():
    with pytest.raises(ValueError, match="max_body_bytes"):
        service_app(
            post={},
            get={},
            public={},
            keys=ApiKeys(),
            max_body_bytes=0,
            debug=False,
            lifespan=None,
        )


def _body_of(size: int) -> bytes:
    body = b'{"p": "' + b"x" * (size - 9) + b'"}'
    assert len(body) == size
    return body


def _chunked(body: bytes):
    for i in range(0, len(body), 10):
        yield body[i : i + 10]


def test_the_body_limit_is_exact_with_and_without_content_length(url):
    with WireClient(url, KEY) as c:
        at_limit = c.post("/echo", content=_body_of(LIMIT))
        assert at_limit.status == 200 and len(at_limit.body["payload"]["p"]) == LIMIT - 9
        over = c.post("/echo", content=_body_of(LIMIT + 1))
        assert_error(over, 413, "payload_too_large", JSON)
        assert over.body["error"]["message"] == (
            f"the body is {LIMIT + 1} bytes; the limit is {LIMIT} bytes"
        )
        chunked_at_limit = c.request("POST", "/echo", content=_chunked(_body_of(LIMIT)))
        assert chunked_at_limit.status == 200
        chunked_over = c.request("POST", "/echo", content=_chunked(_body_of(LIMIT + 1)))
        assert_error(chunked_over, 413, "payload_too_large", JSON)
        assert chunked_over.body["error"]["message"] == (
            f"the body exceeds the limit of {LIMIT} bytes"
        )
        assert c.post("/echo", {"after": True}).body["payload"] == {"after": True}


@pytest.mark.parametrize("path", ["/echo/", "/nowhere", "/echo/deeper"])
def test_unknown_paths_are_404_in_the_protocol_format_never_redirects(url, path):
    with WireClient(url, KEY, encoding="msgpack") as c:
        answer = c.post(path, {})
        assert_error(answer, 404, "not_found", MSGPACK)
        assert repr(path) in answer.body["error"]["message"]
        assert "location" not in answer.headers


def test_wrong_methods_are_405_with_allow(url):
    with WireClient(url, KEY, encoding="msgpack") as c:
        on_post = c.get("/echo")
        assert_error(on_post, 405, "method_not_allowed", MSGPACK)
        assert on_post.headers["allow"] == "POST"
        assert on_post.body["error"]["message"] == "GET is not allowed on /echo (use POST)"
        on_get = c.post("/query", {})
        assert_error(on_get, 405, "method_not_allowed", MSGPACK)
        assert on_get.headers["allow"] == "GET, HEAD"
        on_health = c.request("DELETE", "/health")
        assert_error(on_health, 405, "method_not_allowed", MSGPACK)


@pytest.mark.parametrize("debug", [False, True])
def test_an_exception_escaping_a_route_is_500_internal_error(debug):
    def broken_health():
        raise ValueError("secret detail")

    app = make_app(health=broken_health, debug=debug)
    with serve_in_thread(app) as base_url:
        with WireClient(base_url, encoding="msgpack") as c:
            answer = c.get("/health")
        assert answer.status == 500 and answer.media_type == MSGPACK
        error = answer.body["error"]
        assert error["type"] == "internal_error"
        assert error["message"] == "internal server error (ValueError)"
        assert ("traceback" in error) is debug
        if debug:
            assert "secret detail" in error["traceback"]
        # uvicorn closes a connection whose request raised; the server keeps answering others.
        with WireClient(base_url, encoding="msgpack") as c:
            assert_error(c.post("/echo"), 401, "unauthorized", MSGPACK)


def test_a_client_that_leaves_mid_body_is_dropped_quietly(url, caplog):
    host, port = url.removeprefix("http://").split(":")
    with caplog.at_level(logging.WARNING), socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n"
            + f"Authorization: Bearer {KEY}\r\n\r\n".encode()
            + b'{"half": '
        )
        time.sleep(0.2)  # the endpoint is now waiting for the rest of the body
    with WireClient(url, KEY) as c:
        assert c.post("/echo", {"next": 1}).body["payload"] == {"next": 1}
    time.sleep(0.2)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_the_lifespan_runs_around_serving():
    events = []

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("start")
        yield
        events.append("stop")

    with serve_in_thread(make_app(lifespan=lifespan)) as base_url:
        assert events == ["start"]
        assert httpx.get(f"{base_url}/health").status_code == 200
    assert events == ["start", "stop"]
