"""Observation encoders: turn one timestep's observation into one ``d_model`` token.

Each group of the observation layout (see :mod:`agentgpt.policy.spaces`) has its own
encoder and their outputs are summed, which is how the parts of a Dict or Tuple
observation are combined into one token: a linear layer for the concatenated vector
parts, one shared embedding table (with per-component offsets) for all discrete parts,
and one small CNN per image.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from agentgpt.policy.spaces import ObservationCodec


class ObsTensors(NamedTuple):
    """Torch view of :class:`~agentgpt.policy.spaces.ObsParts` with ``[B, T, ...]`` dims."""

    vector: torch.Tensor
    discrete: torch.Tensor
    images: list[torch.Tensor]


class ImageEncoder(nn.Module):
    """A small CNN for HxWxC uint8 frames: stride-2 3x3 convs until the map is ~8px."""

    def __init__(self, shape: tuple[int, int, int], d_model: int) -> None:
        super().__init__()
        height, width, channels = shape
        layers: list[nn.Module] = []
        in_ch, size = channels, min(height, width)
        for out_ch in (32, 64, 64, 64):
            stride = 2 if size > 8 else 1
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), nn.ReLU()]
            in_ch, size = out_ch, (size + 1) // stride
            if size <= 8 and len(layers) >= 4:
                break
        layers.append(nn.Flatten())
        self.conv = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, channels, height, width)).shape[-1]
        self.proj = nn.Linear(flat, d_model)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        lead = frames.shape[:-3]
        x = frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0
        return self.proj(self.conv(x)).reshape(*lead, -1)


class ObservationEncoder(nn.Module):
    """Sum of the per-group encoders chosen from the observation space."""

    def __init__(self, codec: ObservationCodec, d_model: int) -> None:
        super().__init__()
        self.vector = nn.Linear(codec.vector_dim, d_model) if codec.vector_dim else None
        self.discrete: nn.Embedding | None = None
        if codec.discrete_sizes:
            offsets = torch.tensor([0, *codec.discrete_sizes[:-1]]).cumsum(0)
            self.register_buffer("discrete_offsets", offsets, persistent=False)
            self.discrete = nn.Embedding(int(sum(codec.discrete_sizes)), d_model)
        self.images = nn.ModuleList(ImageEncoder(s, d_model) for s in codec.image_shapes)

    def forward(self, obs: ObsTensors) -> torch.Tensor:
        token: torch.Tensor | None = None
        if self.vector is not None:
            token = self.vector(obs.vector)
        if self.discrete is not None:
            emb = self.discrete(obs.discrete + self.discrete_offsets).sum(-2)
            token = emb if token is None else token + emb
        for encoder, frames in zip(self.images, obs.images, strict=True):
            emb = encoder(frames)
            token = emb if token is None else token + emb
        assert token is not None
        return token
