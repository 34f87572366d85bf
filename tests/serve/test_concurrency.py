"""Many clients at once: calls are merged into shared forward passes, and every client's
agents stay its own."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from agentgpt import GPTAPI
from agentgpt.agent.checkpoint import load_agent
from agentgpt.serve.server import DEFAULT_INLINE_PASS_LIMIT
from tests.serve.test_equality import _drive


@pytest.mark.parametrize("inline_pass_limit", [DEFAULT_INLINE_PASS_LIMIT, 0.0])
def test_concurrent_clients_with_the_same_agent_ids_stay_apart(
    cartpole_run, policy_server, inline_pass_limit: float
) -> None:
    """Six clients drive their own envs through one server with the same agent ids, each
    in its own session; every served action equals that client's own actors', whether
    passes run on the event loop (short ones, by default) or on the inference thread."""
    url, server = policy_server(cartpole_run, batch_wait=0.002, inline_pass_limit=inline_pass_limit)
    failures: list[BaseException] = []
    agent = load_agent(cartpole_run)  # one copy: each client makes its own actors from it

    def client(seed: int) -> None:
        try:
            _drive(cartpole_run, url, num_envs=3, steps=60, seed=seed, agent=agent)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(10, 16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
    with GPTAPI(url) as api:
        stats = api.info()["stats"]
    assert stats["batched_requests"] >= 6 * 60
    assert stats["batches"] <= stats["batched_requests"]
    assert stats["agents_held"] == 6 * 3
    if inline_pass_limit == 0.0:
        assert stats["passes_on_event_loop"] == 0
    else:  # a CartPole pass takes a fraction of the limit
        assert stats["passes_on_event_loop"] > 0


def test_passes_move_to_the_inference_thread_once_they_take_longer_than_the_limit(
    cartpole_run, policy_server
) -> None:
    """With a limit no pass can meet, the first pass (nothing measured yet) runs on the
    event loop and every later one on the inference thread, with the same answers."""
    url, _ = policy_server(cartpole_run, inline_pass_limit=1e-9)
    rng = np.random.default_rng(5)
    with GPTAPI(url) as api, GPTAPI.local(cartpole_run) as local:
        for _ in range(5):
            rows = rng.normal(0, 0.05, size=(3, 4)).astype(np.float32)
            np.testing.assert_array_equal(
                api.select_action([0, 1, 2], rows), local.select_action([0, 1, 2], rows)
            )
        stats = api.info()["stats"]
    assert stats["batches"] == 5
    assert stats["passes_on_event_loop"] == 1


def test_keys_keep_agents_apart(cartpole_run, policy_server) -> None:
    """The same id under two keys is two agents: feeding one never changes the other."""
    url, _ = policy_server(cartpole_run, api_keys=["alpha", "beta"])
    rng = np.random.default_rng(3)
    rows = rng.normal(0, 0.05, size=(8, 4)).astype(np.float32)
    with (
        GPTAPI(url, "alpha") as alpha,
        GPTAPI(url, "beta") as beta,
        GPTAPI.local(cartpole_run) as local,
    ):
        for row in rows:
            a = alpha.select_action(["p1"], row[None])
            np.testing.assert_array_equal(a, local.select_action(["p1"], row[None]))
            beta.select_action(["p1"], (-row)[None])  # another key's p1 sees other observations
