"""A small pre-LayerNorm causal transformer and the attention masks it runs with.

Attention is written out (matmul, mask, softmax) rather than calling a fused kernel so
the same graph exports to ONNX and runs identically there. The boolean mask is built by
the caller: it encodes causality, episode boundaries and padding, so the blocks need not
know about any of them. The MLP is 2x wide rather than GPT's 4x: at these sizes CPU time
goes to per-op overhead and the wide MLP's matmuls, not to anything the tasks need.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Cached keys and values of one layer, each ``[B, heads, T, head_dim]``.
KeyValues = tuple[torch.Tensor, torch.Tensor]


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float, max_distance: int) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        #: Learned relative position embedding: one attention bias per head and distance
        #: (0 = the token itself, up to ``max_distance - 1`` steps back).
        #: Starts as ALiBi-style recency slopes (1, 1/2, 1/4, ... per head), so an output
        #: depends little on how many older steps are in context: training sees every
        #: context length 1..K, acting mostly K. Content attention (a remembered cue)
        #: overrides the bias where it matters, and the table is learned.
        slopes = 2.0 ** -torch.arange(num_heads, dtype=torch.float32)
        self.distance_bias = nn.Parameter(
            -slopes.unsqueeze(1) * torch.arange(max_distance, dtype=torch.float32)
        )

    def forward(
        self,
        x: torch.Tensor,
        allowed: torch.Tensor,
        distance: torch.Tensor,
        past: KeyValues | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, KeyValues]:
        """Attend from ``x`` ``[B, Tq, D]`` to ``past`` keys/values plus its own.

        ``allowed``: bool ``[B, Tq, Tk]``; ``distance``: ``[Tq, Tk]`` steps from each
        query back to each key, shared by every row, or ``[B, Tq, Tk]`` when rows sit at
        different positions of their own contexts. Returns the output and every
        key/value (for caching). With ``last_only`` only the last query attends (output
        ``[B, 1, D]``); keys and values are still those of every token.
        """
        batch, steps, width = x.shape
        qkv = self.qkv(x).reshape(batch, steps, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if last_only:
            q, allowed, distance = q[:, :, -1:], allowed[:, -1:], distance[..., -1:, :]
            steps = 1
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        bias = self.distance_bias[:, distance]
        if distance.dim() == 3:
            bias = bias.transpose(0, 1)  # [H, B, Tq, Tk] -> [B, H, Tq, Tk]
        scores = scores + bias
        scores = scores.masked_fill(~allowed.unsqueeze(1), -1e9)
        weights = self.dropout(torch.softmax(scores, dim=-1))
        mixed = (weights @ v).transpose(1, 2).reshape(batch, steps, width)
        return self.out(mixed), (k, v)


class Block(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float, max_distance: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, num_heads, dropout, max_distance)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 2 * d_model),
            nn.GELU(),
            nn.Linear(2 * d_model, d_model),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        allowed: torch.Tensor,
        distance: torch.Tensor,
        past: KeyValues | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, KeyValues]:
        """``x`` ``[B, T, D]`` through attention and MLP; with ``last_only`` the output is
        the last position's alone (``[B, 1, D]``), which is all a last block must compute
        when only the newest token is read out: no later layer needs the others."""
        mixed, present = self.attn(self.ln1(x), allowed, distance, past, last_only)
        x = (x[:, -1:] if last_only else x) + self.drop(mixed)
        return x + self.mlp(self.ln2(x)), present


def distances(
    steps: int, max_distance: int, device: torch.device | None = None, past: int = 0
) -> torch.Tensor:
    """``[T, past + T]`` how many steps key ``j`` lies before query ``i`` when the T
    queries follow ``past`` cached tokens (clamped into the bias table; entries for
    future keys are masked anyway)."""
    query = torch.arange(past, past + steps, device=device)
    key = torch.arange(past + steps, device=device)
    return (query.unsqueeze(1) - key.unsqueeze(0)).clamp(0, max_distance - 1)


def segment_mask(starts: torch.Tensor) -> torch.Tensor:
    """Attention mask ``bool[B, T, T]`` for packed sequences cut into segments.

    ``starts``: ``bool[B, T]``, True where a segment (an episode, or the context of a
    training window) begins; position 0 must be a start. A token attends to earlier
    tokens of its own segment only, so no window mixes two episodes.
    """
    steps = starts.shape[1]
    index = torch.arange(steps, device=starts.device)
    segment = starts.long().cumsum(1)
    causal = index.unsqueeze(0) <= index.unsqueeze(1)
    return causal & (segment.unsqueeze(2) == segment.unsqueeze(1))


def window_mask(valid: torch.Tensor) -> torch.Tensor:
    """Attention mask ``bool[B, K, K]`` for windows of one episode, left-padded.

    ``valid``: ``bool[B, K]``, True for real timesteps. Padding is never attended to
    (a padding query attends to itself only, which keeps softmax finite). Written
    without data-dependent Python branching so it traces to ONNX.
    """
    steps = valid.shape[1]
    index = torch.arange(steps, device=valid.device)
    causal = index.unsqueeze(0) <= index.unsqueeze(1)
    eye = index.unsqueeze(0) == index.unsqueeze(1)
    return (causal & valid.unsqueeze(1)) | eye
