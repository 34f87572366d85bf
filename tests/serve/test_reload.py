"""``watch``: a training run writes new checkpoints while the server keeps answering."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np

from agentgpt import GPTAPI
from agentgpt.agent.checkpoint import load_agent
from agentgpt.serve.engine import checksum
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.train.run import train


def test_watch_swaps_the_weights_during_training_without_a_failed_call(
    cartpole_run, policy_server, tmp_path
) -> None:
    run_dir = tmp_path / "served"
    shutil.copytree(cartpole_run, run_dir)
    url, server = policy_server(run_dir, watch=True, watch_interval=0.05)
    before = checksum(run_dir / "checkpoint.pt")

    # One agent keeps its context across the reload.
    rng = np.random.default_rng(0)
    history = rng.normal(0, 0.05, size=(6, 4)).astype(np.float32)
    keeper = GPTAPI(url, session="kept")
    for row in history[:5]:
        keeper.select_action(["k"], row[None])

    calls, failures = [0], []
    stop = threading.Event()

    def hammer() -> None:
        with GPTAPI(url, session="load") as api:
            obs = np.zeros((4, 4), np.float32)
            while not stop.is_set():
                try:
                    api.select_action([0, 1, 2, 3], obs)
                    calls[0] += 1
                except Exception as exc:  # reported below
                    failures.append(exc)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        hp = Hyperparameters(
            env_id="CartPole-v1",
            runs_dir=str(tmp_path),
            run_name="served",
            total_steps=2048,
            torch_threads=1,
        )
        train(hp, resume=True, show_progress=False)
        after = checksum(run_dir / "checkpoint.pt")
        assert after != before
        deadline = time.monotonic() + 60
        while keeper.info()["model_checksum"] != after and time.monotonic() < deadline:
            time.sleep(0.05)
        served_calls = calls[0]
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    info = keeper.info()
    assert info["model_checksum"] == after and info["reloads"] >= 1
    assert not failures, failures[0]
    assert served_calls > 0 and calls[0] > served_calls  # answered before and after the swap

    # The kept agent's context survived: its next action is the new weights' on the
    # whole history.
    agent = load_agent(run_dir)
    actor = agent.make_actor(1)
    starts = np.array([True])
    for row in history:
        expected = actor.act(row[None], starts)
        starts[:] = False
    np.testing.assert_array_equal(keeper.select_action(["k"], history[5:]), expected)
    keeper.close()
