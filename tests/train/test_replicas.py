"""Data-parallel replicas (agentgpt.train.replicas): two real processes in a gloo group
on loopback, and the single-process case the trainer uses by default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agentgpt.agent.normalization import RunningMeanStd
from agentgpt.hosts.served import free_port
from agentgpt.train.replicas import Replicas, replica_seed, share_of

WORKER = Path(__file__).with_name("replica_worker.py")
sys.path.insert(0, str(WORKER.parent))
from replica_worker import data  # noqa: E402


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("replicas")
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(rank), str(port), str(out / f"{rank}.json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    for proc in procs:
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output
    return [json.loads((out / f"{rank}.json").read_text()) for rank in range(2)]


def test_merged_statistics_are_those_of_all_the_data(two_replicas: list[dict]) -> None:
    everything = np.concatenate([data(rank, part) for rank in range(2) for part in range(2)])
    for result in two_replicas:
        # Each replica's prior (mean 0, var 1, weight 1e-4) shifts the result by ~1e-5.
        np.testing.assert_allclose(result["mean"], everything.mean(0), rtol=1e-4)
        np.testing.assert_allclose(result["var"], everything.var(0), rtol=1e-4)
        # Both replicas' priors (1e-4 each) plus every sample, counted once.
        assert result["count"] == pytest.approx(len(everything) + 2e-4)
    assert two_replicas[0]["mean"] == two_replicas[1]["mean"]


def test_gradients_and_scalars_are_averaged(two_replicas: list[dict]) -> None:
    for result in two_replicas:
        assert all(g == 1.5 for grads in result["grads"] for g in grads)
        assert result["scalar"] == 5.0
        assert result["mean_values"] == [0.5, 1.0]
        assert result["total"] == 3
        assert result["bounds"] == [0, 3]
        assert result["any_false"] is False
        assert result["any_one"] is True
    assert two_replicas[0]["weights_after_broadcast"] == two_replicas[1]["weights_after_broadcast"]


def test_diverged_weights_are_repaired_from_the_leader(two_replicas: list[dict]) -> None:
    leader, other = two_replicas
    assert leader["is_leader"] and not other["is_leader"]
    assert leader["digest_repaired"] == other["digest_repaired"] == other["digest_after_repair"]
    assert leader["digest_again"] == other["digest_again"] == leader["digest_repaired"]


def test_one_process_agrees_with_itself() -> None:
    replicas = Replicas()
    assert replicas.is_leader and not replicas.distributed
    net = torch.nn.Linear(2, 1)
    net.weight.grad = torch.ones_like(net.weight)
    assert replicas.average_gradients(net.parameters(), [0.25]) == [0.25]
    assert net.weight.grad.eq(1).all()
    rms = RunningMeanStd((2,))
    rms.update(np.ones((4, 2)))
    before = rms.state_dict()
    replicas.merge_statistics([rms])
    assert rms.state_dict()["count"] == before["count"]
    assert replicas.agree_on_weights(net) is None
    assert replicas.bounds(7) == (7, 7) and replicas.total(7) == 7


def test_each_replica_gets_a_share_of_the_env_servers() -> None:
    urls = ["http://a", "http://b", "http://c"]
    assert share_of(urls, 0, 2) == ["http://a", "http://c"]
    assert share_of(urls, 1, 2) == ["http://b"]
    with pytest.raises(ValueError, match="3 env server.*4 training instances"):
        share_of(urls, 0, 4)
    assert replica_seed(5, 0) == 5 and replica_seed(5, 1) != replica_seed(5, 2)
