"""Without ``mlagents-envs`` (the main environment), asking for a Unity env says what to
install instead of failing somewhere inside the server."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agentgpt.cli import app
from agentgpt.remote import RemoteParallelEnv
from agentgpt.remote.errors import EnvError
from tests.unity.conftest import HAS_MLAGENTS

pytestmark = pytest.mark.skipif(HAS_MLAGENTS, reason="mlagents-envs is installed here")


def test_the_cli_names_the_extra(standin_build) -> None:
    result = CliRunner().invoke(app, ["env-server", "--unity", str(standin_build())])
    assert result.exit_code == 1
    assert "pip install 'agentgpt[unity]'" in result.output
    assert "docs/unity.md" in result.output


def test_making_a_registered_build_names_the_extra(env_server, standin_build) -> None:
    url = env_server(register={"Game": str(standin_build())})
    with pytest.raises(EnvError, match=r"mlagents-envs package, which is not installed"):
        RemoteParallelEnv(url, "Game")
