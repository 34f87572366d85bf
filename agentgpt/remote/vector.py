"""``RemoteVectorEnv``: a Gymnasium vector env hosted by an env server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from agentgpt.protocol import routes
from agentgpt.protocol.answers import (
    apply_step_types,
    read_made,
    read_render,
    read_reset,
    read_step,
    read_types,
)
from agentgpt.protocol.autoreset import autoreset_mode_from_wire, autoreset_mode_to_wire
from agentgpt.protocol.fields import (
    AUTORESET_MODE,
    INFO,
    OBSERVATION,
    RESET_MASK,
)
from agentgpt.protocol.requests import (
    make_vec_request,
    render_request,
    reset_mask_to_wire,
    reset_request,
    step_request,
)
from agentgpt.remote.base_transport import BaseTransport
from agentgpt.remote.connect import TransportKind
from agentgpt.remote.infos import vector_info_from_wire
from agentgpt.remote.session import RemoteSession
from agentgpt.remote.transport import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Encoding
from agentgpt.wire import apply_types, value_from_wire, value_to_wire

__all__ = ["RemoteVectorEnv"]


class RemoteVectorEnv(VectorEnv):
    """A :class:`gymnasium.vector.VectorEnv` of ``num_envs`` sub-envs on an env server.

    Behaves like ``gymnasium.make_vec(env_name, num_envs, vectorization_mode=...,
    vector_kwargs={"autoreset_mode": ...})`` run locally: for the same seeds and actions
    the observations, rewards, flags and infos are equal step by step, whichever autoreset
    mode is chosen. Same-step mode's terminal observations come back under Gymnasium's
    ``final_obs`` / ``_final_obs`` keys (the wire calls them ``final_observation``), each
    as the sub-env returned it (its Python or NumPy types and, for Dict observations, its
    key order), so Gymnasium's ``data_equivalence`` holds against the local vector env in
    either encoding. ``metadata`` is the sub-env's (``render_modes``, ``render_fps``, ...)
    plus ``autoreset_mode``, as a local vector env's. ``render()`` returns what the
    server's vector env returns: a tuple with one frame per sub-env.
    ``autoreset_mode`` takes protocol names (``"next_step"``, ``"same_step"``,
    ``"disabled"``) or :class:`gymnasium.vector.AutoresetMode`; ``metadata
    ["autoreset_mode"]`` reports the enum. With ``"disabled"``, reset ended sub-envs with
    ``reset(options={"reset_mask": mask})``.
    ``transport``: how requests travel, ``"auto"`` (the default: the server's streaming
    session when it offers one, else HTTP/1.1), ``"http"``, ``"stream"``, or any
    :class:`~agentgpt.remote.BaseTransport` (its own URL, key, encoding and timeouts then
    apply).
    """

    def __init__(
        self,
        url: str,
        env_name: str,
        num_envs: int,
        api_key: str | None = None,
        *,
        vectorization_mode: str = "sync",
        autoreset_mode: str | AutoresetMode = "next_step",
        seed: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        render_mode: str | None = None,
        encoding: Encoding = "msgpack",
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        transport: BaseTransport | TransportKind | None = None,
    ) -> None:
        self._session = RemoteSession.make(
            routes.MAKE_VEC,
            url,
            api_key,
            make_vec_request(
                env_name,
                num_envs,
                vectorization_mode=vectorization_mode,
                seed=seed,
                env_kwargs=env_kwargs,
                render_mode=render_mode,
                autoreset_mode=autoreset_mode_to_wire(autoreset_mode),
            ),
            encoding=encoding,
            timeout=timeout,
            connect_timeout=connect_timeout,
            transport=transport,
        )
        try:
            made = read_made(self._session.made)
            self.num_envs = made.num_envs
            self.single_observation_space = made.observation_space
            self.single_action_space = made.action_space
            self.autoreset_mode = autoreset_mode_from_wire(made.autoreset_mode)
        except BaseException:
            self._session.close()  # nothing may be left running on the server
            raise
        self.env_name = env_name
        self.env_key: str = self._session.env_key
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {
            **{k: v for k, v in made.metadata.items() if k != AUTORESET_MODE},
            AUTORESET_MODE: self.autoreset_mode,
        }
        self.render_mode = render_mode
        if seed is not None:
            self.action_space.seed(seed)
        self._post = self._session.transport.post
        self._lists_are_objects = self._session.transport.encoding == "msgpack"

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None or isinstance(seed, (int, np.integer)):
            wire_seed: Any = None if seed is None else int(seed)
            super().reset(seed=wire_seed)
        else:
            wire_seed = [None if s is None else int(s) for s in seed]
        if options and RESET_MASK in options:
            options = {**options, RESET_MASK: reset_mask_to_wire(options[RESET_MASK])}
        answer = self._post(routes.RESET, reset_request(self.env_key, wire_seed, options))
        observation, info = read_reset(answer)
        types = read_types(answer)
        return (
            apply_types(
                value_from_wire(self.observation_space, observation), types.get(OBSERVATION)
            ),
            self._info(info, types.get(INFO)),
        )

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        body = step_request(self.env_key, value_to_wire(self.action_space, actions))
        answer = self._post(routes.STEP, body)
        observation, reward, terminated, truncated, info = read_step(answer)
        observation = value_from_wire(self.observation_space, observation)
        observation, reward, terminated, truncated, info_note = apply_step_types(
            answer,
            observation,
            _float_array(reward),
            np.array(terminated, dtype=np.bool_),
            np.array(truncated, dtype=np.bool_),
        )
        return observation, reward, terminated, truncated, self._info(info, info_note)

    def _info(self, info: dict[str, Any] | None, note: Any) -> dict[str, Any]:
        return vector_info_from_wire(
            info,
            self.single_observation_space,
            lists_are_objects=self._lists_are_objects,
            types=note,
        )

    def render(self) -> tuple[Any, ...] | None:
        """The server vector env's ``render()``: one frame per sub-env (``uint8`` arrays
        for ``"rgb_array"``), ``None`` without a render mode."""
        return read_render(self._post(routes.RENDER, render_request(self.env_key)))

    def close_extras(self, **kwargs: Any) -> None:
        """Free the server's env and the connection (``close()`` calls this once)."""
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    def __enter__(self) -> RemoteVectorEnv:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteVectorEnv({self.env_name!r}, num_envs={self.num_envs})"


def _float_array(values: Any) -> np.ndarray:
    """Rewards as float64, whether they came as an array or as a JSON list.

    JSON lists may hold the protocol's ``"NaN"`` / ``"Infinity"`` strings; NumPy parses
    those when converting to a float dtype.
    """
    return np.array(values, dtype=np.float64)
