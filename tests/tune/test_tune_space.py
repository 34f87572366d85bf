"""The search space and the tune file: parsing, checks before any trial, drawing trials."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from agentgpt.train.hyperparameters import Hyperparameters  # noqa: E402
from agentgpt.tune.objective import TrialReporter, TuneSettings, report_schedule  # noqa: E402
from agentgpt.tune.space import (  # noqa: E402
    DEFAULT_SPACE,
    Choice,
    Fixed,
    Range,
    SearchSpace,
    TuneConfigError,
    parse_tune_data,
)
from agentgpt.tune.storage import StorageError, open_storage, redact  # noqa: E402


def test_the_default_space_covers_what_matters():
    assert {
        "learning_rate",
        "target_entropy_start",
        "clip_range",
        "gae_lambda",
        "gamma",
        "rollout_steps",
        "num_input_states",
        "d_model",
    } <= set(DEFAULT_SPACE)
    # Every trial it can draw is a valid run.
    SearchSpace().check(Hyperparameters())


def test_a_tune_file_narrows_fixes_adds_and_drops():
    tune = parse_tune_data(
        {
            "hyperparameters": {"num_envs": 8, "total_steps": 5000},
            "search": {
                "learning_rate": {"low": "1e-4", "high": 1e-3, "log": True},
                "gamma": [0.99, 0.995],
                "clip_range": 0.2,
                "num_layers": {"low": 1, "high": 3},
                "d_model": None,
                "ent_coef": {"value": 0.01},
            },
            "pruner": {"kind": "halving", "startup_trials": 2},
        }
    )
    entries = tune.space.entries
    assert entries["learning_rate"] == Range(1e-4, 1e-3, log=True)
    assert entries["gamma"] == Choice((0.99, 0.995))
    assert entries["clip_range"] == Fixed(0.2)
    assert entries["num_layers"] == Range(1, 3)
    assert entries["ent_coef"] == Fixed(0.01)
    assert "d_model" not in entries
    assert tune.base == {"num_envs": 8, "total_steps": 5000}
    assert tune.pruner.kind == "halving" and tune.pruner.startup_trials == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"search": {"learning_rat": [1e-3]}}, "search: unknown hyperparameter learning_rat"),
        ({"hyperparameters": {"num_env": 4}}, "hyperparameters: unknown hyperparameter num_env"),
        ({"search": {"learning_rate": {"low": 1e-3, "high": 1e-4}}}, "empty range"),
        ({"search": {"gamma": []}}, "empty list of choices"),
        ({"search": {"gamma": {"low": 0.9}}}, "a range needs low and high"),
        ({"search": {"learning_rate": {"low": 0, "high": 1, "log": True}}}, "low > 0"),
        ({"search": {"rollout_steps": {"low": 16.5, "high": 64}}}, "whole number"),
        ({"search": {"total_steps": [1000, 2000]}}, "cannot be searched"),
        ({"searches": {}}, "unknown section searches"),
        ({"pruner": {"kind": "never"}}, "pruner kind"),
        ({"pruner": {"patience": 3}}, "unknown setting patience"),
        ({"hyperparameters": {"vectorization_mode": "threads"}}, "vectorization_mode"),
    ],
)
def test_bad_tune_files_are_one_line_errors(data, message):
    with pytest.raises(TuneConfigError) as caught:
        parse_tune_data(data, "tune.yaml")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_space_that_allows_an_untrainable_trial_is_refused():
    space = parse_tune_data(
        {"search": {"num_input_states": [8, 32], "rollout_steps": [32, 64]}}
    ).space
    with pytest.raises(TuneConfigError, match="cannot train.*num_input_states=32"):
        space.check(Hyperparameters())
    heads = parse_tune_data({"search": {"d_model": [30, 32]}}).space
    with pytest.raises(TuneConfigError, match="d_model=30"):
        heads.check(Hyperparameters())


def test_suggest_draws_every_entry_and_grows_the_position_table():
    space = parse_tune_data(
        {
            "search": {
                "num_input_states": [32],
                "rollout_steps": [64],
                "learning_rate": {"low": 1e-4, "high": 1e-3, "log": True},
                "num_layers": {"low": 1, "high": 3},
                "clip_range": 0.25,
            }
        }
    ).space
    trial = optuna.trial.FixedTrial(
        {
            "num_input_states": 32,
            "rollout_steps": 64,
            "learning_rate": 3e-4,
            "num_layers": 2,
            "target_entropy_start": 0.1,
            "gae_lambda": 0.95,
            "gamma": 0.99,
            "d_model": 32,
        }
    )
    hp = space.suggest(trial, Hyperparameters())
    assert hp.num_input_states == 32 and hp.max_input_states == 32
    assert hp.learning_rate == 3e-4 and hp.num_layers == 2 and hp.clip_range == 0.25


class _Trial:
    def __init__(self) -> None:
        self.reports: list[tuple[float, int]] = []

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return False


class _Event:
    def __init__(self, update: int, num_updates: int) -> None:
        self.update, self.num_updates = update, num_updates


@pytest.mark.parametrize("num_updates", [3, 7, 16, 97])
def test_reports_land_on_the_same_steps_whatever_the_rollout_size(num_updates):
    settings = TuneSettings(
        env_id="CartPole-v1",
        study="s",
        trials=1,
        base={},
        storage="sqlite://",
        budget_steps=100_000,
        reports=4,
    )
    every = report_schedule(num_updates, settings.reports)
    trial = _Trial()
    reporter = TrialReporter(trial, settings, every)
    for update in range(every, num_updates + 1, every):
        reporter._report(_Event(update, num_updates), float(update))
    steps = [step for _, step in trial.reports]
    assert steps == sorted(set(steps))
    assert set(steps) <= {25_000, 50_000, 75_000, 100_000}
    assert len(steps) >= min(3, num_updates)


def test_storage_errors_are_one_line_without_the_password():
    with pytest.raises(StorageError) as caught:
        open_storage("postgresql://someone:secret@127.0.0.1:1/study")
    text = str(caught.value)
    assert "cannot open the study storage" in text
    assert "secret" not in text and "\n" not in text
    assert "someone:***@127.0.0.1:1/study" in text
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


class _StopEvent(_Event):
    def __init__(self, update: int, num_updates: int) -> None:
        super().__init__(update, num_updates)
        self.stopped: str | None = None

    def request_stop(self, reason: str) -> None:
        self.stopped = reason


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_failed_by_another_worker_stops_training(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    trial = study.ask()
    # What another worker does to a trial whose heartbeat is stale.
    storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    settings = TuneSettings(
        env_id="CartPole-v1", study="s", trials=1, base={}, storage="", budget_steps=1000
    )
    reporter = TrialReporter(trial, settings, every=1)
    event = _StopEvent(5, 5)
    reporter._report(event, 10.0)
    assert event.stopped == "marked failed elsewhere"
