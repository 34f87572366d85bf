"""A multi-instance training job: two real ``agentgpt sagemaker train`` processes posing
as ``algo-1`` and ``algo-2`` of one job, each under its own ``/opt/ml`` root, with the
``resourceconfig.json`` SageMaker writes on each instance. They form one gloo group on
loopback (``MASTER_ADDR`` stands in for the ``algo-1`` host name, which only resolves
inside SageMaker's network), and each collects from its share of two real env servers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")

from sagemaker_jobs import TINY, write_job  # noqa: E402

from agentgpt.agent.checkpoint import load_agent  # noqa: E402
from agentgpt.agent.evaluate import evaluate  # noqa: E402
from agentgpt.envhost import EnvServer  # noqa: E402
from agentgpt.envhost.testing import run_server_in_thread  # noqa: E402
from agentgpt.hosts.served import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HOSTS = ["algo-1", "algo-2"]
REPLICA_LINE = re.compile(r"^agentgpt-replica host=(\S+) update=(\d+) weights=(\w+)$", re.M)
STEP_LINE = re.compile(r"agentgpt-metrics .*global_step=(\d+)")


@pytest.fixture(scope="module")
def env_urls() -> Iterator[list[str]]:
    with run_server_in_thread(EnvServer()) as first, run_server_in_thread(EnvServer()) as second:
        yield [first, second]


def _run_job(
    tmp_path: Path, hyperparameters: dict[str, str], succeed: bool = True
) -> dict[str, tuple[Path, str]]:
    """Run both instances to the end; ``{host: (opt_ml root, stdout)}``. Instances whose
    root already holds a job keep their checkpoints (the job's config is rewritten)."""
    port = free_port()
    procs = {}
    for host in HOSTS:
        root = tmp_path / host
        write_job(root, hyperparameters, HOSTS, host, interface="lo")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGPT_", "MASTER_"))}
        env.update(AGENTGPT_OPT_ML=str(root), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs[host] = (
            root,
            subprocess.Popen(
                [sys.executable, "-m", "agentgpt", "sagemaker", "train"],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    outputs = {}
    for host, (root, proc) in procs.items():
        out, err = proc.communicate(timeout=900)
        if succeed:
            assert proc.returncode == 0, f"{host}: {err[-3000:]}"
        else:
            assert proc.returncode != 0, f"{host} succeeded"
        outputs[host] = (root, out)
    return outputs


def _digests(out: str) -> list[tuple[int, str]]:
    return [(int(update), digest) for _, update, digest in REPLICA_LINE.findall(out)]


def test_a_restarted_job_resumes_every_instance_from_the_leaders_checkpoint(
    tmp_path: Path, env_urls: list[str]
) -> None:
    """A spot interruption restarts every instance; SageMaker restores the checkpoint S3
    URI, which only the leader wrote, into each one's /opt/ml/checkpoints."""
    hyperparameters = {**TINY, "env_urls": ",".join(env_urls)}
    first = _run_job(tmp_path, hyperparameters)
    # 2 instances x 4 envs x 16 steps = 128 steps per update.
    assert [u for u, _ in _digests(first["algo-1"][1])] == [1, 2, 3, 4]
    assert _digests(first["algo-1"][1]) == _digests(first["algo-2"][1])
    import shutil

    shutil.copytree(tmp_path / "algo-1" / "checkpoints", tmp_path / "algo-2" / "checkpoints")
    second = _run_job(tmp_path, {**hyperparameters, "total_steps": "768"})
    for _, out in second.values():
        assert "Resuming from the checkpoint" in out
    assert [u for u, _ in _digests(second["algo-1"][1])] == [5, 6]
    assert _digests(second["algo-1"][1]) == _digests(second["algo-2"][1])
    assert [int(s) for s in STEP_LINE.findall(second["algo-1"][1])] == [640, 768]


def test_an_instance_that_fails_fails_the_others_with_a_clear_reason(
    tmp_path: Path, env_urls: list[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    hyperparameters = {**TINY, "env_urls": f"{env_urls[0]},{dead}", "fleet_timeout": "1"}
    _run_job(tmp_path, hyperparameters, succeed=False)
    assert dead in (tmp_path / "algo-2" / "output" / "failure").read_text()
    reason = (tmp_path / "algo-1" / "output" / "failure").read_text()
    assert "a training replica stopped answering" in reason


@pytest.mark.slow
def test_two_instances_train_one_policy_that_learns_cartpole(
    tmp_path: Path, env_urls: list[str]
) -> None:
    hyperparameters = {
        "env_id": "CartPole-v1",
        "seed": "1",
        "total_steps": "100000",
        "env_urls": ",".join(env_urls),
    }
    outputs = _run_job(tmp_path, hyperparameters)
    leader_root, leader_out = outputs["algo-1"]
    other_root, other_out = outputs["algo-2"]

    # Each instance collected from its own env server.
    for _, out in outputs.values():
        assert "Training on 1 env server(s)" in out
        assert "joins 2 instances" in out

    # After every update both instances hold the same weights (and the weights moved).
    leader_digests, other_digests = _digests(leader_out), _digests(other_out)
    assert leader_digests == other_digests
    # The defaults collect 16 envs x 64 steps per instance: 2,048 steps per update.
    assert [u for u, _ in leader_digests] == list(range(1, 100000 // 2048 + 1))
    assert len({d for _, d in leader_digests}) == len(leader_digests)

    # total_steps counts both instances' steps; only algo-1 reports metrics and writes.
    steps = [int(s) for s in STEP_LINE.findall(leader_out)]
    assert steps[:2] == [2048, 4096] and steps[-1] == 2048 * len(leader_digests)
    assert not STEP_LINE.search(other_out)
    assert (leader_root / "model" / "checkpoint.pt").is_file()
    assert (leader_root / "checkpoints" / "agentgpt" / "checkpoint.pt").is_file()
    assert not (other_root / "model").exists()
    assert not (other_root / "checkpoints").exists()

    # The model the job leaves behind plays CartPole.
    result = evaluate(load_agent(leader_root / "model"), episodes=10, seed=100)
    assert result.mean >= 475, result.returns
