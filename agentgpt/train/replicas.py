"""Data-parallel training: several processes, one policy.

A run can outgrow one machine: each process (a *replica*) collects from its own envs
and computes gradients on its own rollout; the replicas average their gradients before
every optimizer step, so they apply the same update and their weights stay identical.
What else must agree is agreed here too: the number of minibatches, PPO's KL early stop,
the observation and reward statistics, the update statistics the entropy tuner reads,
and a stop request. Only the leader (rank 0) writes checkpoints and the model.

:class:`Replicas` is the single-process case, where every agreement is the identity;
the trainer always talks to one, so one code path serves both. :class:`TorchReplicas`
agrees through a ``torch.distributed`` process group (gloo: the trainer computes on the
CPU). After each update the replicas compare a digest of their weights, so a
divergence (different CPUs rounding differently) is detected and repaired from the
leader instead of growing silently.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from agentgpt.agent.normalization import RunningMeanStd

__all__ = ["ReplicaLost", "Replicas", "TorchReplicas", "replica_seed", "share_of"]

log = logging.getLogger("agentgpt.train")

#: Seeds of different replicas' envs lie this far apart, so their episodes differ.
_SEED_STRIDE = 1_000_003


def replica_seed(seed: int, rank: int) -> int:
    """The env seed of replica ``rank`` in a run seeded ``seed`` (the run's own seed for
    the leader, so a one-replica run is unchanged)."""
    return seed + rank * _SEED_STRIDE


def share_of(items: Sequence[str], rank: int, world_size: int) -> list[str]:
    """Replica ``rank``'s share of ``items`` (env server URLs): every ``world_size``-th
    one, starting at its rank. Raises ``ValueError`` when some replica would get none."""
    if len(items) < world_size:
        raise ValueError(
            f"{len(items)} env server(s) for {world_size} training instances: each "
            "instance needs at least one (give more env_urls or fewer instances)"
        )
    return list(items[rank::world_size])


class ReplicaLost(RuntimeError):
    """Another replica stopped answering (it failed, or its machine went away)."""


class Replicas:
    """The replicas of a run; this base class is the run of one process, where every
    agreement returns its input."""

    rank = 0
    world_size = 1

    @property
    def is_leader(self) -> bool:
        """Whether this replica writes checkpoints, metrics of record and the model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Give every replica the leader's weights."""

    def average_gradients(
        self, parameters: Iterable[torch.nn.Parameter], scalars: Sequence[float] = ()
    ) -> list[float]:
        """Average the parameters' gradients over the replicas, in place, and
        ``scalars`` with them (one exchange); returns the averaged scalars."""
        return [float(s) for s in scalars]

    def mean(self, values: Sequence[float]) -> list[float]:
        """Each value averaged over the replicas."""
        return [float(v) for v in values]

    def total(self, value: int) -> int:
        """The sum of ``value`` over the replicas."""
        return int(value)

    def bounds(self, value: int) -> tuple[int, int]:
        """The smallest and largest ``value`` any replica holds."""
        return int(value), int(value)

    def any(self, flag: bool) -> bool:
        """Whether some replica's ``flag`` is true."""
        return bool(flag)

    def merge_statistics(self, stats: Sequence[RunningMeanStd]) -> None:
        """Fold what every replica added to ``stats`` since the last merge into every
        replica's copy, so all normalize with the statistics of all the data."""

    def agree_on_weights(self, module: torch.nn.Module) -> str | None:
        """Make sure every replica holds the same weights (the leader's are broadcast
        when they differ) and return their digest; None for a single process, which has
        nothing to compare."""
        return None

    def close(self) -> None:
        """Leave the group."""


def weights_digest(module: torch.nn.Module) -> str:
    """A short digest of a module's weights (equal digests: equal weights)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class TorchReplicas(Replicas):
    """Replicas joined in a ``torch.distributed`` process group.

    ``address:port`` is where the leader (rank 0) listens for the others; every replica
    is started with the same address and port and its own rank. ``timeout`` bounds how
    long one replica waits for the others at any exchange (a replica collecting from
    slower env servers makes the others wait for it).
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        address: str,
        port: int,
        timeout: float = 1800.0,
    ) -> None:
        import torch.distributed as dist

        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a group of {world_size}")
        if not dist.is_available():
            raise RuntimeError("this torch build has no torch.distributed")
        self._dist = dist
        self.rank = rank
        self.world_size = world_size
        dist.init_process_group(
            backend="gloo",
            init_method=f"tcp://{_host_for_url(address)}:{int(port)}",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout),
        )
        #: What each merged statistic held after the last merge (equal on all replicas).
        self._merged: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------ exchanges
    def _all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        dist = self._dist
        reduce_op = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        try:
            dist.all_reduce(tensor, op=reduce_op[op])
        except RuntimeError as exc:
            raise ReplicaLost(f"a training replica stopped answering: {exc}") from exc
        return tensor

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        try:
            with torch.no_grad():
                for tensor in module.state_dict().values():
                    self._dist.broadcast(tensor, src=0)
        except RuntimeError as exc:
            raise ReplicaLost(f"a training replica stopped answering: {exc}") from exc

    def average_gradients(
        self, parameters: Iterable[torch.nn.Parameter], scalars: Sequence[float] = ()
    ) -> list[float]:
        params = [p for p in parameters if p.requires_grad]
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
            + [torch.tensor([float(s) for s in scalars], dtype=params[0].dtype)]
        )
        self._all_reduce(flat).div_(self.world_size)
        offset = 0
        for p in params:
            size = p.numel()
            p.grad = flat[offset : offset + size].view_as(p).clone()
            offset += size
        return [float(v) for v in flat[offset:]]

    def mean(self, values: Sequence[float]) -> list[float]:
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
        return [float(v) for v in self._all_reduce(tensor).div_(self.world_size)]

    def total(self, value: int) -> int:
        return int(self._all_reduce(torch.tensor([int(value)], dtype=torch.int64))[0])

    def bounds(self, value: int) -> tuple[int, int]:
        low = self._all_reduce(torch.tensor([int(value)], dtype=torch.int64), "min")
        high = self._all_reduce(torch.tensor([int(value)], dtype=torch.int64), "max")
        return int(low[0]), int(high[0])

    def any(self, flag: bool) -> bool:
        return bool(self._all_reduce(torch.tensor([int(bool(flag))]), "max")[0])

    def merge_statistics(self, stats: Sequence[RunningMeanStd]) -> None:
        # Sums (count, sum of x, sum of x^2) add across replicas; each replica sends only
        # what it added since the last merge, which all replicas hold alike.
        parts = []
        for rms in stats:
            count, first, second = _moments(rms)
            base = self._merged.get(id(rms))
            if base is not None:
                count, first, second = count - base[0], first - base[1], second - base[2]
            parts.append(np.concatenate([[count], first.ravel(), second.ravel()]))
        flat = torch.from_numpy(np.concatenate(parts).astype(np.float64))
        self._all_reduce(flat)
        merged = flat.numpy()
        offset = 0
        for rms in stats:
            size = rms.mean.size
            count = float(merged[offset])
            first = merged[offset + 1 : offset + 1 + size].reshape(rms.mean.shape)
            second = merged[offset + 1 + size : offset + 1 + 2 * size].reshape(rms.mean.shape)
            offset += 1 + 2 * size
            base = self._merged.get(id(rms))
            if base is not None:
                count, first, second = count + base[0], first + base[1], second + base[2]
            _set_moments(rms, count, first, second)
            self._merged[id(rms)] = _moments(rms)

    def agree_on_weights(self, module: torch.nn.Module) -> str | None:
        # The digest's first 60 bits as an integer: equal minimum and maximum over the
        # replicas means equal weights everywhere.
        digest = weights_digest(module)
        low, high = self.bounds(int(digest[:15], 16))
        if low == high:
            return digest
        log.warning("training replicas' weights diverged; taking the leader's")
        self.broadcast_parameters(module)
        return weights_digest(module)

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()


def _moments(rms: RunningMeanStd) -> tuple[float, np.ndarray, np.ndarray]:
    count = float(rms.count)
    return count, rms.mean * count, (rms.var + rms.mean**2) * count


def _set_moments(rms: RunningMeanStd, count: float, first: np.ndarray, second: np.ndarray) -> None:
    rms.count = count
    rms.mean = first / count
    rms.var = np.maximum(second / count - rms.mean**2, 0.0)


def _host_for_url(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address
