"""One replica of the two-process tests in test_replicas.py (run as a script).

``python replica_worker.py RANK PORT OUT.json`` joins a gloo group of two on loopback,
exercises each agreement of :class:`~agentgpt.train.replicas.TorchReplicas` on
rank-dependent data, and writes what it ends up holding to ``OUT.json``.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from agentgpt.agent.normalization import RunningMeanStd
from agentgpt.train.replicas import TorchReplicas, weights_digest


def data(rank: int, part: int) -> np.ndarray:
    """The observations replica ``rank`` sees in round ``part`` (3-dim, different sizes)."""
    rng = np.random.default_rng(100 * rank + part)
    return rng.normal(loc=rank * 5.0 + part, scale=1.0 + rank, size=(7 + 13 * rank + part, 3))


def main() -> None:
    rank, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    replicas = TorchReplicas(rank, 2, "127.0.0.1", port, timeout=60)
    result: dict = {"rank": rank, "is_leader": replicas.is_leader}

    # Statistics: two rounds of merging must equal the statistics of all the data once.
    rms = RunningMeanStd((3,))
    for part in range(2):
        rms.update(data(rank, part))
        replicas.merge_statistics([rms])
    result["mean"], result["var"], result["count"] = rms.mean.tolist(), rms.var.tolist(), rms.count

    # Gradients: each replica's gradient is (rank + 1) * ones, plus one scalar rides along.
    torch.manual_seed(rank)  # different initial weights on purpose
    net = torch.nn.Linear(3, 2)
    replicas.broadcast_parameters(net)
    result["weights_after_broadcast"] = weights_digest(net)
    for p in net.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    (scalar,) = replicas.average_gradients(net.parameters(), [10.0 * rank])
    result["grads"] = [p.grad.flatten().tolist() for p in net.parameters()]
    result["scalar"] = scalar

    result["mean_values"] = replicas.mean([rank, 2.0 * rank])
    result["total"] = replicas.total(rank + 1)
    result["bounds"] = list(replicas.bounds(rank * 3))
    result["any_false"] = replicas.any(False)
    result["any_one"] = replicas.any(rank == 1)

    # A divergence is repaired from the leader.
    with torch.no_grad():
        net.bias.add_(rank)
    result["digest_repaired"] = replicas.agree_on_weights(net)
    result["digest_after_repair"] = weights_digest(net)
    result["digest_again"] = replicas.agree_on_weights(net)
    replicas.close()
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
