"""Training on env servers: asynchronous collection, faults mid-run, multi-agent envs.

Every test talks to real env servers over loopback: in-process uvicorn threads where a
test needs to stop and restart a server at an exact moment, child processes (killed with
SIGKILL) where it needs a real crash.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from agentgpt.agent.evaluate import evaluate
from agentgpt.agent.normalization import ObsNormalizer
from agentgpt.agent.team_eval import evaluate_team
from agentgpt.cli import app
from agentgpt.envhost import EnvServer
from agentgpt.envhost.testing import run_server_in_thread
from agentgpt.envs import PETTINGZOO_ENVS
from agentgpt.hosts.fleet import FleetOptions, host_report, open_fleet, split_envs
from agentgpt.hosts.local import LocalEnvHosts
from agentgpt.policy.model import GPTPolicy
from agentgpt.remote import RemoteParallelEnv
from agentgpt.remote.fleet import Fleet
from agentgpt.train.callbacks import Callback, UpdateEvent
from agentgpt.train.collector import Collector
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.train.reward_scaling import RewardScaler
from agentgpt.train.run import Trainer, train


def _collector(fleet: Fleet, hp: Hyperparameters) -> Collector:
    torch.manual_seed(hp.seed)
    policy = GPTPolicy(
        fleet.single_observation_space,
        fleet.single_action_space,
        num_layers=1,
        d_model=16,
        num_heads=2,
        max_input_states=hp.max_input_states,
        num_input_states=hp.num_input_states,
    ).eval()
    normalizer = ObsNormalizer(policy.obs_codec.vector_dim)
    return Collector(
        fleet,
        policy,
        normalizer,
        RewardScaler(fleet.num_envs, hp.gamma),
        rollout_steps=hp.rollout_steps,
        window=hp.window,
        stride=hp.stride,
        control_random_prob=hp.control_random_prob,
        seed=hp.seed,
    )


def _check_rows_are_sound(rollout, slots: np.ndarray, cut_slots: set[int]) -> int:
    """Structural checks every row must pass; returns how many rows ended at a cut."""
    valid = rollout.valid.numpy()
    starts = rollout.starts.numpy()
    cuts = 0
    for row, slot in enumerate(slots):
        assert starts[row, 0], "every row starts a context"
        used = np.flatnonzero(valid[row] | rollout.truncated[row] | rollout.terminated[row])
        assert used.size, "no empty rows"
        # A truncated or terminated step is followed by a final token or by the row's end.
        for t in np.flatnonzero(rollout.truncated[row] | rollout.terminated[row]):
            if t + 1 < valid.shape[1]:
                assert not valid[row, t + 1]
        padding = ~valid[row]
        last = int(np.flatnonzero(valid[row]).max())
        if slot in cut_slots and last + 2 < valid.shape[1] and padding[last + 1 :].all():
            # A row closed early at a cut: its last step is cut short (truncated), and
            # the rest is padding that trains nothing.
            assert rollout.truncated[row, last] or rollout.terminated[row, last]
            cuts += 1
    return cuts


def test_training_data_survives_a_server_restart() -> None:
    """A host that dies mid-rollout cuts its slots' rows; after it restarts (new
    incarnation, same port) its slots feed fresh episodes in new rows."""
    hp = Hyperparameters(
        env_id="CartPole-v1",
        num_envs=4,
        rollout_steps=16,
        num_input_states=4,
        max_input_states=4,
        seed=5,
    )
    with run_server_in_thread(EnvServer()) as healthy_url:
        server = run_server_in_thread(EnvServer())
        flaky_url = server.__enter__()
        port = int(flaky_url.rsplit(":", 1)[1])
        fleet = Fleet.from_urls(
            [healthy_url, flaky_url],
            "CartPole-v1",
            envs_per_host=2,
            seed=hp.seed,
            step_timeout=5.0,
            backoff_initial=0.05,
            backoff_max=0.2,
            fleet_timeout=30.0,
        )
        try:
            collector = _collector(fleet, hp)
            collector.reset(seed=hp.seed)
            first = fleet.hosts[1].incarnation
            for _ in range(2):
                rollout = collector.collect(hp.rollout_steps)
                _check_rows_are_sound(rollout, collector.last_slots, set())
            server.__exit__(None, None, None)  # the host goes away mid-run
            cuts = 0
            for _ in range(3):
                rollout = collector.collect(hp.rollout_steps)
                cuts += _check_rows_are_sound(rollout, collector.last_slots, {2, 3})
                assert set(collector.last_slots.tolist()) <= {0, 1, 2, 3}
            assert not fleet.hosts[1].up
            with run_server_in_thread(EnvServer(), port=port):
                deadline = time.monotonic() + 30
                seen_back = set()
                while time.monotonic() < deadline and not {2, 3} <= seen_back:
                    rollout = collector.collect(hp.rollout_steps)
                    _check_rows_are_sound(rollout, collector.last_slots, set())
                    seen_back |= set(collector.last_slots.tolist()) & {2, 3}
                assert {2, 3} <= seen_back, "the restarted host's envs never came back"
                assert fleet.hosts[1].up
                assert fleet.hosts[1].incarnation != first
        finally:
            fleet.close()


class LagRecorder(Callback):
    def __init__(self) -> None:
        self.lags: list[float] = []

    def on_update(self, event: UpdateEvent) -> None:
        self.lags.append(float(event.timing["policy_lag"]))


def test_overlapped_updates_act_with_a_copy_that_follows_the_learner(tmp_path: Path) -> None:
    hp = Hyperparameters(
        env_id="CartPole-v1",
        num_envs=4,
        total_steps=3 * 4 * 64,
        overlap_updates=True,
        runs_dir=str(tmp_path),
        run_name="overlap",
    )
    with run_server_in_thread(EnvServer()) as url:
        fleet = Fleet.from_urls([url], "CartPole-v1", envs_per_host=4, seed=hp.seed)
        try:
            run_dir = tmp_path / "overlap"
            run_dir.mkdir()
            trainer = Trainer(hp, run_dir, envs=fleet)
            before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
            lags = LagRecorder()
            trainer.run([lags])
        finally:
            fleet.close()
    assert trainer.actor is not trainer.policy
    learned = trainer.policy.state_dict()
    assert any(not torch.equal(before[k], learned[k]) for k in learned)  # it trained
    acting = trainer.actor.state_dict()
    assert all(torch.equal(acting[k], learned[k]) for k in learned)  # and the actor follows
    assert len(lags.lags) == 3 and all(lag >= 0 for lag in lags.lags)


def _metrics_updates(run_dir: Path) -> int:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return 0
    with path.open(newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


@pytest.mark.slow
def test_training_reaches_the_threshold_through_crashes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """CartPole on 3 local hosts: one is SIGKILLed and restarted, another killed for
    good; training finishes, reaches 475+, and the log tells the story."""
    caplog.set_level(logging.INFO, logger="agentgpt.fleet")
    # 150k steps, not the default 100k: fleet runs are not bit-reproducible, and with two
    # hosts lost on the way a 100k-step run can end short of 475.
    hp = Hyperparameters(
        env_id="CartPole-v1", total_steps=150_000, runs_dir=str(tmp_path), run_name="faults"
    )
    run_dir = tmp_path / "faults"
    events: list[str] = []

    with LocalEnvHosts(3, log_dir=tmp_path / "hosts") as hosts:

        def chaos() -> None:
            while _metrics_updates(run_dir) < 15:
                time.sleep(0.05)
            hosts.kill(0)
            events.append("killed 0")
            time.sleep(1.0)
            hosts.restart(0)
            events.append("restarted 0")
            while _metrics_updates(run_dir) < 40:
                time.sleep(0.05)
            hosts.kill(1)
            events.append("killed 1")

        thread = threading.Thread(target=chaos, daemon=True)
        thread.start()
        options = FleetOptions(
            env_urls=hosts.urls, api_key=hosts.api_key, fleet_timeout=60, step_timeout=10
        )
        with open_fleet(hp.env_id, options, num_envs=hp.num_envs, seed=hp.seed) as fleet:
            result = train(hp, envs=fleet, show_progress=False)
            report = host_report(fleet.hosts)
        thread.join(timeout=5)
        urls = hosts.urls

    assert events == ["killed 0", "restarted 0", "killed 1"]
    assert result.global_step >= hp.total_steps - 2_000
    log = caplog.text
    assert log.count(urls[0]) >= 2 and "down" in log  # host 0 went down and came back
    assert urls[1] in log
    back = [r for r in caplog.records if urls[0] in r.getMessage() and "back" in r.getMessage()]
    assert back, "host 0 coming back was not logged"
    # The summary: host 0 came back, host 1 (killed near the end) never did.
    assert report[0].startswith(f"env host {urls[0]}: down once") and "came back" in report[0]
    assert report[1].startswith(f"env host {urls[1]}: down once") and "never came back" in report[1]
    score = evaluate(result.run_dir, episodes=10, seed=123)
    assert score.mean >= 475, score


@pytest.mark.slow
def test_readme_main_job_trains_over_local_env_servers(tmp_path: Path) -> None:
    """``agentgpt train CartPole-v1 --env-hosts 2``, as the README runs it, reaches 475+."""
    result = CliRunner().invoke(
        app,
        [
            "train",
            "CartPole-v1",
            "--env-hosts",
            "2",
            "--runs-dir",
            str(tmp_path),
            "--run-name",
            "readme",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "started 2 local env servers" in result.output
    assert result.output.count(": up throughout") == 2
    score = evaluate(tmp_path / "readme", episodes=20, seed=0)
    assert score.mean >= 475, score


@pytest.mark.slow
def test_multi_agent_landmarks_learns_over_the_wire(trained_landmarks_team) -> None:
    """Two agents sharing one policy learn the cooperative Landmarks env, trained (in the
    shared fixture) and evaluated through an env server; the documented bar for a trained
    team is 1.5 (random play: about -1.6, a scripted greedy team: about 2.29)."""
    result = trained_landmarks_team
    with LocalEnvHosts(1, register=PETTINGZOO_ENVS) as hosts:
        env = RemoteParallelEnv(hosts.urls[0], "agentgpt/Landmarks-v0", api_key=hosts.api_key)
        try:
            score = evaluate_team(result.run_dir, env, episodes=50, seed=1000)
        finally:
            env.close()
    assert score.mean >= 1.5, score
    # The CLI evaluates the run on a local copy of the env: the same episodes, so the
    # same team returns as over the wire.
    shown = CliRunner().invoke(
        app, ["eval", str(result.run_dir), "--episodes", "50", "--seed", "1000"]
    )
    assert shown.exit_code == 0, shown.output
    assert f"mean team return {score.mean:.2f} +/- {score.std:.2f} over 50 episodes" in shown.output


def test_cli_trains_on_local_env_hosts(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            "CartPole-v1",
            "--env-hosts",
            "2",
            "--total-steps",
            "2048",
            "--runs-dir",
            str(tmp_path),
            "--run-name",
            "hosts",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    with (tmp_path / "hosts" / "timing.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2  # 2048 steps = 2 updates of 16 envs x 64 steps
    assert all(row["hosts_up"] == "2" for row in rows)
    assert (tmp_path / "hosts" / "checkpoint.pt").exists()


def test_cli_trains_on_env_urls_with_a_key_from_the_environment(tmp_path: Path) -> None:
    """Two running servers that need a key, serving different numbers of envs; the key
    comes from AGENTGPT_API_KEY, never from the command line."""
    with (
        run_server_in_thread(EnvServer(api_keys=["s3cret"])) as first,
        run_server_in_thread(EnvServer(api_keys=["s3cret"])) as second,
    ):
        result = CliRunner().invoke(
            app,
            [
                "train",
                "CartPole-v1",
                "--env-url",
                first,
                "--env-url",
                second,
                "--envs-per-host",
                "3,5",
                "--total-steps",
                "1024",
                "--runs-dir",
                str(tmp_path),
                "--run-name",
                "urls",
                "--no-progress",
            ],
            env={"AGENTGPT_API_KEY": "s3cret"},
        )
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "Trained 1024 steps" in result.output  # 2 updates of 8 envs x 64 steps
    saved = (tmp_path / "urls" / "hyperparameters.yaml").read_text()
    assert "s3cret" not in saved


def test_cli_reports_a_wrong_key_clearly(tmp_path: Path) -> None:
    with run_server_in_thread(EnvServer(api_keys=["right"])) as url:
        result = CliRunner().invoke(
            app,
            ["train", "CartPole-v1", "--env-url", url, "--runs-dir", str(tmp_path)],
            env={"AGENTGPT_API_KEY": "wrong"},
        )
    assert result.exit_code == 1
    assert "Cannot train on the env servers: HTTP 401 (unauthorized)" in result.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--env-hosts", "2", "--env-url", "http://127.0.0.1:1"], "not both"),
        (["--env-hosts", "2", "--envs-per-host", "x"], "not a number"),
        (["--envs-per-host", "4"], "needs --env-url or --env-hosts"),
        (["--env-hosts", "2", "--envs-per-host", "1,2,3"], "one per host"),
    ],
)
def test_cli_rejects_bad_fleet_flags(flags: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "CartPole-v1", "--runs-dir", str(tmp_path), *flags])
    assert result.exit_code == 2
    assert message in result.output


def test_fleet_options_and_env_split() -> None:
    assert split_envs(16, 3) == [6, 5, 5]
    assert split_envs(2, 4) == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="not both"):
        FleetOptions(env_urls=["http://a:1"], env_hosts=1)
    with pytest.raises(ValueError, match="give env URLs"):
        FleetOptions()


def test_training_stops_with_a_checkpoint_when_every_host_is_gone(tmp_path: Path) -> None:
    hp = Hyperparameters(
        env_id="CartPole-v1",
        num_envs=2,
        total_steps=10**6,
        runs_dir=str(tmp_path),
        run_name="gone",
        checkpoint_every=1,
    )
    from agentgpt.train.run import EnvHostsUnavailable

    server = run_server_in_thread(EnvServer())
    url = server.__enter__()

    def stop_later() -> None:
        while _metrics_updates(tmp_path / "gone") < 2:
            time.sleep(0.02)
        server.__exit__(None, None, None)

    threading.Thread(target=stop_later, daemon=True).start()
    with pytest.raises(EnvHostsUnavailable, match="checkpoint") as caught:
        options = FleetOptions(env_urls=[url], fleet_timeout=1.0, step_timeout=2.0)
        with open_fleet(hp.env_id, options, num_envs=hp.num_envs, seed=hp.seed) as fleet:
            train(hp, envs=fleet, show_progress=False)
    assert caught.value.global_step >= 2 * 128
    assert (tmp_path / "gone" / "checkpoint.pt").exists()
