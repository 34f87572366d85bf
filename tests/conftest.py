"""Shared pytest fixtures. Each section belongs to one part of the product."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# ----------------------------------------------------------------------------------------
# Env servers (agentgpt.envhost): real uvicorn servers on free loopback ports.
# ----------------------------------------------------------------------------------------


@pytest.fixture
def env_server() -> Iterator[Callable[..., str]]:
    """Factory: ``env_server(**EnvServer kwargs)`` or ``env_server(server)`` -> base URL.

    Each call starts one real server in a background thread; all are stopped (and their
    envs closed) when the test ends.
    """
    from agentgpt.envhost import EnvServer, run_server_in_thread

    with contextlib.ExitStack() as stack:

        def start(server: Any = None, **kwargs: Any) -> str:
            if server is None:
                server = EnvServer(**kwargs)
            return stack.enter_context(run_server_in_thread(server))

        yield start


# ----------------------------------------------------------------------------------------
# Trainer (agentgpt.train): one CartPole-v1 run with default hyperparameters, trained once
# per session and shared by the learning, control-value and export tests.
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def trained_cartpole(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``RunResult`` of CartPole-v1 trained with every default (100k steps, seed 1).

    Its ``run_dir`` loads with ``agentgpt.agent.checkpoint.load_agent``. Slow (about a
    minute of both cores): request it only from tests marked ``slow``.
    """
    from agentgpt.train.hyperparameters import Hyperparameters
    from agentgpt.train.run import train

    runs = tmp_path_factory.mktemp("trained_runs")
    hparams = Hyperparameters(env_id="CartPole-v1", runs_dir=str(runs), run_name="cartpole")
    return train(hparams, show_progress=False)


@pytest.fixture(scope="session")
def trained_landmarks_team(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``RunResult`` of the two-agent ``agentgpt/Landmarks-v0`` trained through a local
    env server (150k steps, 8 envs, seed 1), shared by the trainer's and the inference
    server's multi-agent tests.

    Training over a fleet is not bit-reproducible (how many steps the envs take while an
    update runs depends on timing), so the budget sits where runs of several seeds have
    converged near the greedy team's 2.29, well clear of the documented bar of 1.5; at
    100k steps a run of seed 1 can still stop short of it. Slow (about two minutes):
    request it only from tests marked ``slow``.
    """
    from agentgpt.envs import PETTINGZOO_ENVS
    from agentgpt.hosts.fleet import FleetOptions, open_fleet
    from agentgpt.hosts.local import LocalEnvHosts
    from agentgpt.train.hyperparameters import Hyperparameters
    from agentgpt.train.run import train

    runs = tmp_path_factory.mktemp("landmarks_runs")
    with LocalEnvHosts(1, register=PETTINGZOO_ENVS) as hosts:
        hparams = Hyperparameters(
            env_id="agentgpt/Landmarks-v0",
            total_steps=150_000,
            num_envs=8,
            runs_dir=str(runs),
            run_name="landmarks",
            seed=1,
        )
        options = FleetOptions(env_urls=hosts.urls, api_key=hosts.api_key)
        with open_fleet(hparams.env_id, options, num_envs=hparams.num_envs, seed=1) as fleet:
            return train(hparams, envs=fleet, show_progress=False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Factory: ``tiny_run(env_id, total_steps=1024, seed=3)`` -> run dir of a short real run.

    Four envs, one thread: a few seconds each. For tests of what is done with a run
    (evaluation, export), not of how well it learned.
    """
    from agentgpt.train.hyperparameters import Hyperparameters
    from agentgpt.train.run import train

    def make(env_id: str, total_steps: int = 1024, seed: int = 3) -> Any:
        hparams = Hyperparameters(
            env_id=env_id,
            seed=seed,
            total_steps=total_steps,
            num_envs=4,
            rollout_steps=64,
            runs_dir=str(tmp_path_factory.mktemp("runs")),
            run_name=env_id.replace("/", "-"),
            torch_threads=1,
        )
        return train(hparams, show_progress=False).run_dir

    return make
