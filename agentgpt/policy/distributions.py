"""The action distribution: masked independent categoricals plus a diagonal Gaussian.

Every action space reduces to some categorical components (Discrete, MultiDiscrete,
MultiBinary parts) and some continuous dims (Box parts), so one class covers plain,
multi-discrete and hybrid Dict/Tuple action spaces. Components of different sizes are
padded into one ``[..., C, max_n]`` tensor so log-probs and entropies stay vectorized.
Sampling takes an explicit ``torch.Generator`` so collection is reproducible.
"""

from __future__ import annotations

import copy
import math

import torch

#: Logit given to masked or padding choices; finite so entropies never become NaN.
MASKED_LOGIT = -1e9
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class PaddedCategoricalLayout:
    """Index tables that scatter flat logits ``[..., sum(n)]`` into ``[..., C, max_n]``."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = list(sizes)
        self.max_n = max(sizes) if sizes else 1
        index = torch.zeros(len(sizes), self.max_n, dtype=torch.long)
        pad = torch.ones(len(sizes), self.max_n, dtype=torch.bool)
        offset = 0
        for i, n in enumerate(sizes):
            index[i, :n] = torch.arange(offset, offset + n)
            pad[i, :n] = False
            offset += n
        self.index = index.reshape(-1)
        self.pad = pad

    def pad_logits(self, flat: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Flat logits (and an optional bool mask, True = allowed) to padded log-probs."""
        if mask is not None:
            flat = flat.masked_fill(~mask, MASKED_LOGIT)
        padded = flat.index_select(-1, self.index.to(flat.device))
        padded = padded.reshape(*flat.shape[:-1], len(self.sizes), self.max_n)
        padded = padded.masked_fill(self.pad.to(flat.device), MASKED_LOGIT)
        return torch.log_softmax(padded, dim=-1)


class ActionDistribution:
    """Distribution over one action per position, built from the policy head outputs.

    ``logits``: ``[..., num_logits]``; ``mean``: ``[..., Dc]`` (normalized units);
    ``log_std``: ``[Dc]``; ``mask``: optional ``bool[..., num_logits]``.
    """

    def __init__(
        self,
        layout: PaddedCategoricalLayout,
        logits: torch.Tensor,
        mean: torch.Tensor,
        log_std: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> None:
        self.layout = layout
        self.has_discrete = bool(layout.sizes)
        self.has_continuous = mean.shape[-1] > 0
        self.log_probs = layout.pad_logits(logits, mask) if self.has_discrete else None
        self.mean = mean
        self.log_std = log_std.expand_as(mean)

    def sample(self, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(discrete int64[..., C], continuous float[..., Dc])``."""
        disc = self._empty_discrete()
        if self.has_discrete:
            u = torch.rand(self.log_probs.shape, generator=generator).clamp_(1e-12, 1.0)
            disc = torch.argmax(self.log_probs - torch.log(-torch.log(u)), dim=-1)
        cont = self.mean
        if self.has_continuous:
            noise = torch.randn(self.mean.shape, generator=generator)
            cont = self.mean + noise * self.log_std.exp()
        return disc, cont

    def mode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The most likely action: argmax per component and the Gaussian mean."""
        disc = self._empty_discrete()
        if self.has_discrete:
            disc = torch.argmax(self.log_probs, dim=-1)
        return disc, self.mean

    def log_prob(self, disc: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """Joint log-probability: the sum over all components and dims."""
        total = torch.zeros(self.mean.shape[:-1], dtype=self.mean.dtype, device=self.mean.device)
        if self.has_discrete:
            picked = self.log_probs.gather(-1, disc.unsqueeze(-1)).squeeze(-1)
            total = total + picked.sum(-1)
        if self.has_continuous:
            z = (cont - self.mean) / self.log_std.exp()
            total = total + (-0.5 * z.pow(2) - self.log_std - _LOG_SQRT_2PI).sum(-1)
        return total

    def entropy(self) -> torch.Tensor:
        total = torch.zeros(self.mean.shape[:-1], dtype=self.mean.dtype, device=self.mean.device)
        if self.has_discrete:
            total = total - (self.log_probs.exp() * self.log_probs).sum((-1, -2))
        if self.has_continuous:
            total = total + (self.log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)
        return total

    def select(self, index: torch.Tensor) -> ActionDistribution:
        """The distributions of rows ``index`` (int64, along the first dim), in that
        order: what a caller that reordered its inputs hands back in their order."""
        picked = copy.copy(self)
        if self.log_probs is not None:
            picked.log_probs = self.log_probs.index_select(0, index)
        picked.mean = self.mean.index_select(0, index)
        picked.log_std = self.log_std.index_select(0, index)
        return picked

    def _empty_discrete(self) -> torch.Tensor:
        return torch.zeros((*self.mean.shape[:-1], 0), dtype=torch.long, device=self.mean.device)
