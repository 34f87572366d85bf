"""Export a trained agent to ONNX, so a game engine can run it without Python.

The graph takes the same window the agent's actor keeps (see ``docs/onnx.md``):

* ``obs``: float32 ``[batch, K, obs_dim]``, RAW observations, oldest first, left-padded.
  The observation normalizer of the run is baked into the graph, so the engine never
  needs the training statistics.
* ``mask``: float32 ``[batch, K]``, 1.0 for real timesteps of the current episode and
  0.0 for padding (values above 0.5 count as real). The last slot must hold the newest
  observation.
* ``control``: float32 ``[batch]``, the control value in [0, 1] the network is
  conditioned on.

Output ``action``: the deterministic action for the newest observation, in the env's
terms (see :meth:`GPTPolicy.deterministic_action_window` for the per-space layout). With
``with_log_probs`` a second output ``log_probs`` float32 ``[batch, C, max_n]`` holds the
log-probabilities of each discrete action component (padding choices at about -1e9), for
engines that sample or mask actions themselves.

The batch axis is dynamic; K is fixed at export (the trained K unless a shorter one is
asked for), because a fixed window is what an engine's ring buffer holds anyway and it
keeps every operator static.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from agentgpt.policy.encoders import ObsTensors
from agentgpt.policy.model import GPTPolicy

if TYPE_CHECKING:
    from agentgpt.agent.agent import Agent

OPSET = 17
INPUT_NAMES = ["obs", "mask", "control"]


class ExportablePolicy(nn.Module):
    """Raw observation window in, deterministic action out: normalization included.

    ``forward`` reproduces the actor exactly: ``clip((obs - mean) / sqrt(var + eps))``
    on every slot, then the policy's last-position deterministic action.
    """

    def __init__(
        self,
        policy: GPTPolicy,
        mean: np.ndarray,
        var: np.ndarray,
        clip: float,
        epsilon: float,
        with_log_probs: bool = False,
    ) -> None:
        super().__init__()
        if not policy.obs_codec.is_flat_vector:
            raise ValueError(
                "ONNX export needs a flat Box observation space (one float vector per step); "
                f"got {policy.observation_space}"
            )
        if with_log_probs and not policy.action_codec.discrete_sizes:
            raise ValueError("log_probs output needs a discrete action component")
        self.policy = policy
        self.with_log_probs = with_log_probs
        inv_std = 1.0 / np.sqrt(np.asarray(var, np.float64) + float(epsilon))
        self.register_buffer("obs_mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("obs_inv_std", torch.as_tensor(inv_std, dtype=torch.float32))
        self.clip = float(clip)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        scaled = (obs - self.obs_mean) * self.obs_inv_std
        if math.isfinite(self.clip):
            scaled = scaled.clamp(-self.clip, self.clip)
        return scaled

    def forward(
        self, obs: torch.Tensor, mask: torch.Tensor, control: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        normalized = self.normalize(obs)
        valid = mask > 0.5
        batch, steps = valid.shape
        empty = torch.zeros(batch, steps, 0, dtype=torch.long, device=obs.device)
        out = self.policy.forward_window(ObsTensors(normalized, empty, []), valid, control)
        disc, cont = out.dist.mode()
        action = self.policy.env_action_tensor(disc, cont)
        if self.with_log_probs:
            return action, out.dist.log_probs
        return action


def exportable(agent: Agent, with_log_probs: bool = False) -> ExportablePolicy:
    """Wrap an agent's policy and normalizer statistics into one exportable module."""
    norm = agent.obs_normalizer
    return ExportablePolicy(
        agent.policy, norm.mean, norm.var, norm.clip, norm.epsilon, with_log_probs
    ).eval()


def _load(run_dir_or_agent: str | Path | Agent) -> Agent:
    from agentgpt.agent.agent import Agent
    from agentgpt.agent.checkpoint import load_agent

    if isinstance(run_dir_or_agent, Agent):
        return run_dir_or_agent
    return load_agent(run_dir_or_agent)


def example_inputs(
    obs_dim: int, num_input_states: int, batch: int = 2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs of the right shapes and dtypes (used to trace the graph)."""
    obs = torch.zeros(batch, num_input_states, obs_dim)
    mask = torch.ones(batch, num_input_states)
    control = torch.ones(batch)
    return obs, mask, control


def export_onnx(
    run_dir_or_agent: str | Path | Agent,
    path: str | Path,
    num_input_states: int | None = None,
    with_log_probs: bool = False,
) -> Path:
    """Write the agent as an ONNX model at ``path`` and return the path.

    ``num_input_states`` fixes the window length K of the graph (default: the trained K;
    at most ``max_input_states``). The graph is checked with ``onnx.checker`` before
    it is written.
    """
    import onnx

    agent = _load(run_dir_or_agent)
    policy = agent.policy
    k = int(num_input_states or policy.num_input_states)
    if not 1 <= k <= policy.max_input_states:
        raise ValueError(f"num_input_states must be in [1, {policy.max_input_states}], got {k}")
    module = exportable(agent, with_log_probs)
    inputs = example_inputs(policy.obs_codec.vector_dim, k)
    output_names = ["action", "log_probs"] if with_log_probs else ["action"]
    dynamic_axes = {name: {0: "batch"} for name in INPUT_NAMES + output_names}

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deterministic and needs nothing beyond torch; its
        # deprecation notice, and the tracer's note that space constants (such as a
        # MultiDiscrete ``start``) become graph constants, are expected here.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            inputs,
            buffer,
            input_names=INPUT_NAMES,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.doc_string = (
        f"AgentGPT policy for {agent.env.env_id}: obs float32[batch,{k},"
        f"{policy.obs_codec.vector_dim}] raw, mask float32[batch,{k}] (1 = real step), "
        "control float32[batch]; normalization is part of the graph."
    )
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path
