"""Training callbacks: per-update hooks, periodic evaluation, stopping early, determinism."""

from __future__ import annotations

from pathlib import Path

from agentgpt.agent.checkpoint import load_checkpoint
from agentgpt.train.callbacks import Callback, EvaluationEvent, UpdateEvent
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.train.reporting import METRIC_COLUMNS
from agentgpt.train.run import train


def tiny(tmp_path: Path, **changes) -> Hyperparameters:
    """CartPole with 2 envs, 16-step rollouts and K=4: 32 steps per update, 6 updates."""
    base = dict(
        num_envs=2,
        rollout_steps=16,
        num_input_states=4,
        max_input_states=4,
        total_steps=32 * 6,
        epochs=2,
        d_model=16,
        num_heads=2,
        num_layers=1,
        runs_dir=str(tmp_path),
        torch_threads=1,
        checkpoint_every=100,
    )
    return Hyperparameters(**{**base, **changes})


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None, stop_on_eval: bool = False) -> None:
        self.updates: list[UpdateEvent] = []
        self.evaluations: list[EvaluationEvent] = []
        self.ended = 0
        self.stop_at = stop_at
        self.stop_on_eval = stop_on_eval

    def on_update(self, event: UpdateEvent) -> None:
        self.updates.append(event)
        if event.update == self.stop_at:
            event.request_stop("enough")

    def on_evaluation(self, event: EvaluationEvent) -> None:
        self.evaluations.append(event)
        if self.stop_on_eval:
            event.request_stop("pruned")

    def on_end(self) -> None:
        self.ended += 1


def test_on_update_sees_every_metrics_row(tmp_path: Path) -> None:
    recorder = Recorder()
    result = train(tiny(tmp_path, run_name="rows"), show_progress=False, callbacks=[recorder])
    assert [e.update for e in recorder.updates] == [1, 2, 3, 4, 5, 6]
    assert [e.progress for e in recorder.updates][-1] == 1.0
    assert all(list(e.row) == METRIC_COLUMNS for e in recorder.updates)
    assert recorder.updates[-1].row == result.metrics
    assert all("policy_lag" in e.timing and "hosts_up" not in e.timing for e in recorder.updates)
    assert recorder.ended == 1 and not recorder.evaluations
    assert not result.stopped_early and result.stop_reason is None


def test_a_stop_request_saves_a_checkpoint_that_resumes(tmp_path: Path) -> None:
    recorder = Recorder(stop_at=2)
    hp = tiny(tmp_path, run_name="stop")
    result = train(hp, show_progress=False, callbacks=[recorder])
    assert result.stopped_early and result.stop_reason == "enough"
    assert result.updates == 2 and result.global_step == 64
    assert load_checkpoint(result.run_dir)["progress"] == {"update": 2, "global_step": 64}
    assert recorder.ended == 1
    resumed = train(hp, resume=True, show_progress=False)
    assert resumed.updates == 6 and not resumed.stopped_early
    # Stopped and resumed, the run is the straight run.
    straight = train(tiny(tmp_path, run_name="straight"), show_progress=False)
    a = (straight.run_dir / "metrics.csv").read_text()
    assert (resumed.run_dir / "metrics.csv").read_text() == a


def test_periodic_evaluation_reaches_callbacks(tmp_path: Path) -> None:
    recorder = Recorder()
    hp = tiny(tmp_path, run_name="eval", eval_every=2, eval_episodes=3)
    train(hp, show_progress=False, callbacks=[recorder])
    assert [e.update for e in recorder.evaluations] == [2, 4, 6]
    for event in recorder.evaluations:
        assert event.result is not None and event.result.episodes == 3
        assert event.result.mean == sum(event.result.returns) / 3


def test_a_pruner_stops_at_the_first_evaluation(tmp_path: Path) -> None:
    """What an Optuna pruner does: report the evaluation, ask to stop."""
    recorder = Recorder(stop_on_eval=True)
    hp = tiny(tmp_path, run_name="pruned", eval_every=3, eval_episodes=2)
    result = train(hp, show_progress=False, callbacks=[recorder])
    assert result.stopped_early and result.stop_reason == "pruned" and result.updates == 3
    assert len(recorder.evaluations) == 1


def test_seeded_runs_write_identical_metrics(tmp_path: Path) -> None:
    runs = [train(tiny(tmp_path, run_name=name), show_progress=False) for name in "ab"]
    a, b = ((r.run_dir / "metrics.csv").read_text() for r in runs)
    assert a == b and len(a.splitlines()) == 7
