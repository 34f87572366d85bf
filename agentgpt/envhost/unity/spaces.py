"""Gymnasium spaces for ML-Agents behaviours, and values between the two.

A behaviour's ``BehaviorSpec`` lists its sensors (``observation_specs``) and its
``ActionSpec``. Here they become:

* observations: one sensor gives its own space; several give a ``Dict`` keyed by sensor
  name (``obs_<i>`` for a sensor without a name, or one whose name repeats). Vector and
  2-D sensors are float32 ``Box`` spaces without bounds. 3-D sensors (cameras, render
  textures) are ``uint8`` ``Box`` images of shape ``(H, W, C)`` in ``[0, 255]`` by
  default, the form image encoders take; ML-Agents hands them over as floats in
  ``[0, 1]`` decoded from 8-bit PNG, so nothing is lost. ``visual="float32"`` keeps
  them as float32 in ``[0, 1]``.
* actions: continuous only: ``Box(-1, 1, (n,), float32)``; one discrete branch:
  ``Discrete(n)``; several: ``MultiDiscrete``; both: ``Dict({"continuous": Box,
  "discrete": Discrete | MultiDiscrete})``; none: ``Discrete(1)``.

The spec objects are read by attribute (``shape``, ``name``, ``continuous_size``,
``discrete_branches``), so nothing here imports ``mlagents_envs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["BehaviorLayout", "VISUAL_DTYPES"]

#: How 3-D (image) sensors are served.
VISUAL_DTYPES = ("uint8", "float32")
CONTINUOUS, DISCRETE = "continuous", "discrete"


def _sensor_names(specs: list[Any]) -> list[str]:
    names: list[str] = []
    for i, spec in enumerate(specs):
        name = str(getattr(spec, "name", "") or "")
        if not name or name in names:
            name = f"obs_{i}"
        names.append(name)
    return names


@dataclass
class BehaviorLayout:
    """One behaviour's spaces and the conversions of its values."""

    name: str
    spec: Any
    visual: str = "uint8"
    sensor_names: list[str] = field(init=False)
    image: list[bool] = field(init=False)
    observation_space: spaces.Space = field(init=False)
    action_space: spaces.Space = field(init=False)
    continuous_size: int = field(init=False)
    branches: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.visual not in VISUAL_DTYPES:
            raise ValueError(f"visual must be one of {VISUAL_DTYPES}, got {self.visual!r}")
        specs = list(self.spec.observation_specs)
        if not specs:
            raise ValueError(f"behaviour {self.name!r} has no observations")
        self.sensor_names = _sensor_names(specs)
        self.image = [len(tuple(s.shape)) == 3 for s in specs]
        sensor_spaces = [
            self._sensor_space(tuple(int(d) for d in s.shape), image)
            for s, image in zip(specs, self.image, strict=True)
        ]
        if len(sensor_spaces) == 1:
            self.observation_space = sensor_spaces[0]
        else:
            self.observation_space = spaces.Dict(
                dict(zip(self.sensor_names, sensor_spaces, strict=True))
            )
        action_spec = self.spec.action_spec
        self.continuous_size = int(action_spec.continuous_size)
        self.branches = tuple(int(b) for b in action_spec.discrete_branches)
        self.action_space = self._action_space()

    # ---------------------------------------------------------------- spaces

    def _sensor_space(self, shape: tuple[int, ...], image: bool) -> spaces.Box:
        if image and self.visual == "uint8":
            return spaces.Box(0, 255, shape, np.uint8)
        if image:
            return spaces.Box(0.0, 1.0, shape, np.float32)
        return spaces.Box(-np.inf, np.inf, shape, np.float32)

    def _discrete_space(self) -> spaces.Space:
        if len(self.branches) == 1:
            return spaces.Discrete(self.branches[0])
        return spaces.MultiDiscrete(np.array(self.branches, dtype=np.int64))

    def _action_space(self) -> spaces.Space:
        continuous = spaces.Box(-1.0, 1.0, (self.continuous_size,), np.float32)
        if self.continuous_size and self.branches:
            return spaces.Dict({CONTINUOUS: continuous, DISCRETE: self._discrete_space()})
        if self.continuous_size:
            return continuous
        if self.branches:
            return self._discrete_space()
        return spaces.Discrete(1)

    @property
    def mask_size(self) -> int:
        return int(sum(self.branches))

    # ---------------------------------------------------------------- values

    def observation(self, obs_list: list[np.ndarray], row: int) -> Any:
        """Agent ``row``'s observation from a ``DecisionSteps``/``TerminalSteps`` ``obs``
        list (one batched array per sensor)."""
        values = [
            self._sensor_value(np.asarray(batch[row]), image)
            for batch, image in zip(obs_list, self.image, strict=True)
        ]
        if len(values) == 1:
            return values[0]
        return dict(zip(self.sensor_names, values, strict=True))

    def _sensor_value(self, value: np.ndarray, image: bool) -> np.ndarray:
        if image and self.visual == "uint8":
            return np.clip(np.rint(value * 255.0), 0, 255).astype(np.uint8)
        if image:
            return np.clip(value, 0.0, 1.0).astype(np.float32)
        return value.astype(np.float32, copy=False)

    def empty_actions(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Zero actions for ``n`` agents: ``(continuous float32[n, c], discrete int32[n, b])``."""
        return (
            np.zeros((n, self.continuous_size), np.float32),
            np.zeros((n, len(self.branches)), np.int32),
        )

    def write_action(
        self, value: Any, row: int, continuous: np.ndarray, discrete: np.ndarray
    ) -> None:
        """Put one agent's action (a value of :attr:`action_space`) in the batch rows."""
        if self.continuous_size and self.branches:
            continuous[row] = np.asarray(value[CONTINUOUS], np.float32)
            discrete[row] = np.asarray(value[DISCRETE], np.int32).reshape(-1)
        elif self.continuous_size:
            continuous[row] = np.asarray(value, np.float32)
        elif self.branches:
            discrete[row] = np.asarray(value, np.int32).reshape(-1)

    def allowed_actions(self, masks: Any, row: int) -> np.ndarray | None:
        """Agent ``row``'s action mask as the trainer reads it: ``bool[sum(branches)]``,
        true where an action is allowed (ML-Agents marks masked actions true)."""
        if masks is None or not self.branches:
            return None
        return ~np.concatenate([np.asarray(m[row], bool) for m in masks])
