"""``agentgpt tune`` on the command line: bad input stops before any training with one
line, and a short search on CartPole prunes a trial that cannot learn and leaves a
``best.yaml`` that ``agentgpt train`` takes as is."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest
import yaml
from tune_cli import REPO, cli

pytest.importorskip("optuna")

#: A small, fast search: tiny models and envs, and a learning rate of 0 that the pruner
#: has to catch.
TINY = {
    "hyperparameters": {"num_envs": 4, "torch_threads": 1},
    "search": {
        "learning_rate": [0.0, 0.002],
        "d_model": [16, 32],
        "rollout_steps": [32, 64],
        "num_input_states": [4, 8],
    },
    "pruner": {"startup_trials": 1, "warmup_reports": 1},
}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("tune_file", "fragments"),
    [
        ({"search": {"learning_rat": [0.001]}}, ("unknown hyperparameter learning_rat",)),
        ({"hyperparameters": {"num_env": 4}}, ("unknown hyperparameter num_env",)),
        ({"search": {"clip_range": {"low": 0.3, "high": 0.1}}}, ("clip_range", "empty range")),
        ({"search": {"gamma": []}}, ("gamma", "empty list of choices")),
        (
            {"search": {"num_input_states": [64], "rollout_steps": [32]}},
            ("cannot train", "num_input_states=64"),
        ),
    ],
)
def test_a_bad_tune_file_is_one_line_before_any_training(tmp_path, tune_file, fragments):
    config = _write(tmp_path / "tune.yaml", tune_file)
    result = cli("tune", "CartPole-v1", "--config", str(config), "--runs-dir", "runs", cwd=tmp_path)
    _assert_one_line_error(result, "Error:", *fragments)
    assert result.returncode == 2
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_storage_is_one_line_before_any_training(tmp_path):
    result = cli(
        "tune",
        "CartPole-v1",
        "--storage",
        "postgresql://tuner:hunter2@127.0.0.1:1/studies",
        "--runs-dir",
        "runs",
        cwd=tmp_path,
    )
    _assert_one_line_error(result, "cannot open the study storage", "127.0.0.1:1")
    assert "hunter2" not in result.stderr
    assert not list((tmp_path / "runs").rglob("trial-*"))


def test_show_of_a_study_that_does_not_exist(tmp_path):
    result = cli("tune", "CartPole-v1", "--show", "--runs-dir", "runs", cwd=tmp_path)
    _assert_one_line_error(result, "no study storage")


def test_without_optuna_the_command_names_the_tune_extra(tmp_path):
    import subprocess
    import sys

    from tune_cli import cli_env

    code = (
        "import sys\n"
        "sys.modules['optuna'] = None\n"
        "from agentgpt.cli import main\n"
        "sys.argv = ['agentgpt', 'tune', 'CartPole-v1']\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "agentgpt tune needs the tune extra (not installed: optuna). Install with:"
        ' pip install -c constraints.txt -e ".[tune]"'
    ]


@pytest.mark.slow
def test_a_short_search_prunes_a_trial_that_cannot_learn_and_its_best_trains(tmp_path):
    config = _write(tmp_path / "tune.yaml", TINY)
    args = [
        "tune",
        "CartPole-v1",
        "--config",
        str(config),
        "--trials",
        "4",
        "--budget-steps",
        "4096",
        "--reports",
        "4",
        "--eval-episodes",
        "3",
        "--sampler-seed",
        "0",
        "--runs-dir",
        "runs",
        "--study",
        "short",
        "--no-live",
    ]
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "runs" / "short"

    with sqlite3.connect(folder / "study.db") as db:
        rows = db.execute(
            "SELECT t.number, t.state, p.param_value FROM trials t JOIN trial_params p"
            " ON p.trial_id = t.trial_id WHERE p.param_name = 'learning_rate'"
        ).fetchall()
    # Categorical parameters are stored as the index of the choice: 0 is lr 0.0.
    states = {number: (state, int(choice)) for number, state, choice in rows}
    assert len(states) == 4
    pruned = [n for n, (state, _) in states.items() if state == "PRUNED"]
    assert pruned, result.stdout
    assert all(states[n][1] == 0 for n in pruned), states  # only lr 0 is pruned
    assert any(state == "COMPLETE" and lr == 1 for state, lr in states.values())

    # Each trial is an ordinary run, with its checkpoint and metrics; a pruned one
    # stopped before its budget.
    for number in states:
        run = folder / f"trial-{number:04d}"
        assert (run / "checkpoint.pt").exists() and (run / "tensorboard").is_dir()
    with open(folder / f"trial-{pruned[0]:04d}" / "metrics.csv") as f:
        steps = [int(row["global_step"]) for row in csv.DictReader(f)]
    assert steps[-1] < 4096

    assert "Best trial" in result.stdout and "importance" in result.stdout
    best = folder / "best.yaml"
    hp = yaml.safe_load(best.read_text())
    assert hp["learning_rate"] == 0.002 and hp["run_name"] is None

    trained = cli(
        "train",
        "--config",
        str(best),
        "--total-steps",
        "512",
        "--run-name",
        "from-best",
        "--no-progress",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "runs" / "from-best" / "checkpoint.pt").exists()

    shown = cli(
        "tune", "CartPole-v1", "--study", "short", "--show", "--runs-dir", "runs", cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    assert "pruned" in shown.stdout and "Best trial" in shown.stdout

    # The same command again finds the study finished and runs nothing more.
    again = cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "trial 4" not in again.stdout


@pytest.mark.slow
def test_trials_train_on_env_servers(tmp_path, env_server):
    url = env_server()
    config = _write(
        tmp_path / "tune.yaml",
        {
            "hyperparameters": {"num_envs": 2, "torch_threads": 1},
            "search": {"d_model": [16], "rollout_steps": [32], "num_input_states": [4]},
            "pruner": "none",
        },
    )
    result = cli(
        "tune",
        "CartPole-v1",
        "--config",
        str(config),
        "--trials",
        "1",
        "--budget-steps",
        "128",
        "--reports",
        "1",
        "--eval-episodes",
        "1",
        "--env-url",
        url,
        "--runs-dir",
        "runs",
        "--live",  # the live table, drawn even without a terminal
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "tune-CartPole-v1" / "trial-0000"
    with open(run / "timing.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(row["hosts_up"] == "1" for row in rows)  # trained on the server
    assert "Best trial 0" in result.stdout and "trial" in result.stdout
    assert (tmp_path / "runs" / "tune-CartPole-v1" / "best.yaml").exists()
