"""Two ``agentgpt tune`` workers on one study in a real PostgreSQL, as on two machines.

Both take trials, no trial number is handed out twice, and a worker killed with SIGKILL
in the middle of a trial leaves that trial failed (by its stale heartbeat) and retried
by the other worker with the same parameters.
"""

from __future__ import annotations

import signal
import time

import pytest
import yaml
from tune_cli import started

optuna = pytest.importorskip("optuna")

TINY = {
    "hyperparameters": {"num_envs": 4, "torch_threads": 1},
    "search": {
        "learning_rate": {"low": 5e-4, "high": 3e-3, "log": True},
        "d_model": [16, 32],
        "rollout_steps": [32, 64],
        "num_input_states": [4, 8],
    },
    "pruner": "none",
}
TRIALS = 6


def _trials(url: str, study: str) -> list:
    from agentgpt.tune.storage import open_storage

    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []


def _worker_args(url: str, config: str, runs: str) -> list[str]:
    return [
        "tune",
        "CartPole-v1",
        "--config",
        config,
        "--storage",
        url,
        "--study",
        "shared",
        "--trials",
        str(TRIALS),
        "--budget-steps",
        "2048",
        "--reports",
        "2",
        "--eval-episodes",
        "2",
        "--heartbeat",
        "2",
        "--runs-dir",
        runs,
        "--no-live",
    ]


@pytest.mark.slow
def test_two_workers_share_a_study_and_a_killed_workers_trial_is_retried(postgres_url, tmp_path):
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(TINY))
    with (
        started(*_worker_args(postgres_url, str(config), "runs-a"), cwd=tmp_path) as a,
        started(*_worker_args(postgres_url, str(config), "runs-b"), cwd=tmp_path) as b,
    ):
        # Kill worker A in the middle of its second trial, once it has finished one.
        victim = None
        deadline = time.monotonic() + 240
        while victim is None and time.monotonic() < deadline:
            assert a.poll() is None, a.communicate()[1]
            trials = _trials(postgres_url, "shared")
            mine = [t for t in trials if t.user_attrs.get("host", "").endswith(f":{a.pid}")]
            done = [t for t in mine if t.state.is_finished()]
            running = [t for t in mine if t.state.name == "RUNNING"]
            if done and running:
                victim = running[0]
            else:
                time.sleep(0.2)
        assert victim is not None, "worker A never started a second trial"
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        out, err = b.communicate(timeout=300)
        assert b.returncode == 0, err

    trials = _trials(postgres_url, "shared")
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert sorted(numbers) == list(range(len(numbers)))

    by_number = {t.number: t for t in trials}
    killed = by_number[victim.number]
    assert killed.state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state.name == "COMPLETE"
    assert retry.params == killed.params
    assert retry.user_attrs["host"].endswith(f":{b.pid}")
    assert f"retry of trial {victim.number}" in out

    # Both workers contributed finished trials; none is left running.
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    hosts = {t.user_attrs["host"].rsplit(":", 1)[1] for t in finished}
    assert {str(a.pid), str(b.pid)} <= hosts
    assert len(finished) >= TRIALS
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
