"""Errors take their status from the protocol's vocabulary and travel in one shape."""

from __future__ import annotations

import inspect

import pytest

from agentgpt.envhost import errors as env_errors
from agentgpt.protocol.errors import ERRORS
from agentgpt.service import errors
from agentgpt.service.errors import ApiError, api_error, error_body


def _constructors(module):
    for name in module.__all__:
        fn = getattr(module, name)
        if inspect.isfunction(fn) and inspect.signature(fn).return_annotation in (
            "ApiError",
            ApiError,
        ):
            yield name, fn


def _build(name, fn):
    params = inspect.signature(fn).parameters
    first = next(iter(params))
    if first == "exc":
        return fn(RuntimeError("boom"))
    return fn(f"{name} happened")


@pytest.mark.parametrize("module", [errors, env_errors], ids=["service", "envhost"])
def test_every_constructor_uses_a_documented_type_and_its_status(module):
    built = [(name, _build(name, fn)) for name, fn in _constructors(module) if name != "api_error"]
    assert built
    for name, error in built:
        kind = ERRORS[error.error_type]
        assert error.status == kind.status, name


def test_api_error_refuses_a_type_outside_the_vocabulary():
    assert api_error("not_found", "x").status == ERRORS["not_found"].status
    with pytest.raises(KeyError):
        api_error("teapot", "short and stout")


def test_auth_and_method_errors_carry_their_headers():
    assert errors.unauthorized("no key").headers == {"WWW-Authenticate": "Bearer"}
    assert errors.method_not_allowed("no", "GET, HEAD").headers == {"Allow": "GET, HEAD"}
    assert errors.method_not_allowed("no").headers is None
    assert errors.bad_request("bad").headers is None


def test_an_internal_error_names_only_the_exception_type():
    try:
        raise ValueError("secret detail")
    except ValueError as exc:
        error = errors.internal_error(exc)
    assert error.message == "internal server error (ValueError)"
    assert "secret detail" in error.debug_traceback
    assert error_body(error) == {
        "error": {"type": "internal_error", "message": "internal server error (ValueError)"}
    }
    with_traceback = error_body(error, debug=True)["error"]
    assert with_traceback["traceback"] == error.debug_traceback


def test_the_body_has_no_traceback_key_when_there_is_none():
    error = errors.payload_too_large("too big")
    assert error_body(error, debug=True) == {
        "error": {"type": "payload_too_large", "message": "too big"}
    }


def test_env_errors_keep_the_traceback_but_show_type_and_message():
    try:
        raise RuntimeError("the simulator crashed")
    except RuntimeError as exc:
        error = env_errors.env_error(exc)
    assert (error.status, error.error_type) == (500, "env_error")
    assert error.message == "RuntimeError: the simulator crashed"
    assert "the simulator crashed" in error.debug_traceback
    unencodable = env_errors.unencodable_answer(TypeError("odd value"))
    assert unencodable.message == "the env's output cannot be encoded: TypeError: odd value"
    assert unencodable.debug_traceback is None
