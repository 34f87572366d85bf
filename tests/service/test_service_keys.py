"""API keys: where a server reads them and how a bearer token becomes an owner."""

from __future__ import annotations

import pytest

from agentgpt.protocol.keys import API_KEYS_ENV_VAR
from agentgpt.service.errors import ApiError
from agentgpt.service.keys import ANONYMOUS, ApiKeys, keys_from_env, keys_from_file


def test_keys_from_env_split_on_commas_and_skip_blanks():
    assert API_KEYS_ENV_VAR == "AGENTGPT_API_KEYS"
    assert keys_from_env({API_KEYS_ENV_VAR: " a, b ,,c , "}) == ["a", "b", "c"]
    assert keys_from_env({}) == []


def test_keys_from_env_read_the_process_environment(monkeypatch):
    monkeypatch.setenv(API_KEYS_ENV_VAR, "from-env")
    assert keys_from_env() == ["from-env"]


def test_keys_from_file_skip_blank_lines_and_comments(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text("# operators\nfirst\n\n  second  \n#disabled\n", encoding="utf-8")
    assert keys_from_file(path) == ["first", "second"]
    assert keys_from_file(str(path)) == ["first", "second"]


def test_bad_key_lists_are_refused():
    with pytest.raises(TypeError):
        ApiKeys("one-key")
    for bad in ([""], ["  "], ["has space"], [3]):
        with pytest.raises(ValueError):
            ApiKeys(bad)


def test_without_keys_everyone_is_anonymous():
    keys = ApiKeys(None)
    assert not keys.enabled and len(keys) == 0
    assert keys.owner_for(None) == ANONYMOUS
    assert keys.owner_for("Bearer anything") == ANONYMOUS


def test_owners_are_labels_by_position_never_the_key():
    keys = ApiKeys([" first ", "second", "first"])  # stripped, duplicates dropped
    assert keys.enabled and len(keys) == 2
    assert keys.owner_for("Bearer first") == "key#0"
    assert keys.owner_for("bearer   second ") == "key#1"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing API key: send 'Authorization: Bearer <KEY>'"),
        ("", "missing API key: send 'Authorization: Bearer <KEY>'"),
        ("Basic first", "malformed Authorization header: expected 'Authorization: Bearer <KEY>'"),
        ("Bearer", "malformed Authorization header: expected 'Authorization: Bearer <KEY>'"),
        ("Bearer firs", "invalid API key"),
        ("Bearer first-and-more", "invalid API key"),
    ],
)
def test_failed_checks_are_401_with_a_plain_reason(authorization, message):
    with pytest.raises(ApiError) as caught:
        ApiKeys(["first"]).owner_for(authorization)
    error = caught.value
    assert (error.status, error.error_type, error.message) == (401, "unauthorized", message)
    assert error.headers == {"WWW-Authenticate": "Bearer"}
