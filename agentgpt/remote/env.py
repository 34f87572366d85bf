"""``RemoteEnv``: a single Gymnasium env hosted by an env server, used as if it were local."""

from __future__ import annotations

from typing import Any

import gymnasium

from agentgpt.protocol import routes
from agentgpt.protocol.answers import (
    apply_step_types,
    read_made,
    read_render,
    read_reset,
    read_step,
    read_types,
)
from agentgpt.protocol.fields import (
    FINAL_OBSERVATION,
    INFO,
    OBSERVATION,
)
from agentgpt.protocol.requests import make_request, render_request, reset_request, step_request
from agentgpt.remote.base_transport import BaseTransport
from agentgpt.remote.connect import TransportKind
from agentgpt.remote.session import RemoteSession
from agentgpt.remote.transport import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Encoding
from agentgpt.wire import apply_types, value_from_wire, value_to_wire

__all__ = ["RemoteEnv"]


class RemoteEnv(gymnasium.Env):
    """A :class:`gymnasium.Env` whose ``reset`` and ``step`` run on an env server.

    The spaces are the server env's own (rebuilt from ``/make``), so agents, wrappers and
    ``check_env`` see exactly what they would see locally, and so are the values: the
    server's type notes give back the env's own Python and NumPy types (a Python ``int``
    observation stays an ``int``, an ``int8`` info array an ``int8`` array, in either
    encoding), so Gymnasium's ``data_equivalence`` holds between this env's outputs and the
    local env's. ``metadata`` is the server env's (``render_modes``, ``render_fps``, ...).
    ``render()`` returns what the server env's ``render()`` returns: with
    ``render_mode="rgb_array"`` a ``uint8`` frame ``[H, W, 3]``, so Gymnasium's
    ``RenderCollection`` and ``RecordVideo`` (which needs ``moviepy``) work on this env;
    ``"human"`` is refused, the server has no screen. ``seed`` is used by the first
    ``reset()`` that gives none and also seeds this object's ``action_space``.
    ``autoreset_mode`` is the server's (``"disabled"``, the default, behaves like a plain
    local env; ``"same_step"`` puts the decoded terminal observation in
    ``info["final_observation"]``). Also registered as ``agentgpt/Remote-v0``::

        env = gymnasium.make("agentgpt/Remote-v0", url="http://host:8000", env_name="CartPole-v1")

    ``transport``: how requests travel, ``"auto"`` (the default: the server's
    streaming session when it offers one, else HTTP/1.1), ``"http"``, ``"stream"``, or any
    :class:`~agentgpt.remote.BaseTransport` (``url``, ``api_key``, ``encoding`` and the
    timeouts are then the transport's own). Raises
    :class:`~agentgpt.remote.RemoteEnvError` for anything the server refuses.
    """

    #: What ``gymnasium.make("agentgpt/Remote-v0", ...)`` checks a ``render_mode``
    #: against before any server is asked: the modes the protocol carries. Each instance
    #: replaces it with its server env's metadata.
    metadata: dict[str, Any] = {"render_modes": ["rgb_array", "ansi"]}

    def __init__(
        self,
        url: str,
        env_name: str,
        api_key: str | None = None,
        *,
        seed: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        render_mode: str | None = None,
        autoreset_mode: str | None = None,
        encoding: Encoding = "msgpack",
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        transport: BaseTransport | TransportKind | None = None,
    ) -> None:
        self._session = RemoteSession.make(
            routes.MAKE,
            url,
            api_key,
            make_request(
                env_name,
                seed=seed,
                env_kwargs=env_kwargs,
                render_mode=render_mode,
                autoreset_mode=autoreset_mode,
            ),
            encoding=encoding,
            timeout=timeout,
            connect_timeout=connect_timeout,
            transport=transport,
        )
        try:
            made = read_made(self._session.made)
            if made.agents is not None:
                raise TypeError(
                    f"{env_name!r} is a multi-agent env; use agentgpt.remote.RemoteParallelEnv"
                )
            self.observation_space = made.observation_space
            self.action_space = made.action_space
            self.autoreset_mode: str = made.autoreset_mode
            # An instance attribute: each remote env has its own server env's metadata.
            self.metadata = {"render_modes": [], **made.metadata}
        except BaseException:
            self._session.close()  # nothing may be left running on the server
            raise
        self.env_name = env_name
        self.env_key: str = self._session.env_key
        self.render_mode = render_mode
        if seed is not None:
            self.action_space.seed(seed)
        self._make_seed = seed
        # Bound once: it runs on every step.
        self._post = self._session.transport.post

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        # Keeps this object's ``np_random`` seeded as a local env's would be: the server
        # seeds its env with the same value (the make-time seed on the first reset).
        if seed is None and self._np_random is None:
            super().reset(seed=self._make_seed)
        else:
            super().reset(seed=seed)
        answer = self._post(routes.RESET, reset_request(self.env_key, seed, options))
        observation, info = read_reset(answer)
        observation = value_from_wire(self.observation_space, observation)
        types = read_types(answer)
        if not types:
            return observation, self._info(info, None)
        return apply_types(observation, types.get(OBSERVATION)), self._info(info, types.get(INFO))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        body = step_request(self.env_key, value_to_wire(self.action_space, action))
        answer = self._post(routes.STEP, body)
        observation, reward, terminated, truncated, info = read_step(answer)
        observation = value_from_wire(self.observation_space, observation)
        observation, reward, terminated, truncated, info_note = apply_step_types(
            answer, observation, float(reward), bool(terminated), bool(truncated)
        )
        return observation, reward, terminated, truncated, self._info(info, info_note)

    def _info(self, info: dict[str, Any] | None, note: Any) -> dict[str, Any]:
        if not info:
            return {}
        if FINAL_OBSERVATION in info:
            info[FINAL_OBSERVATION] = value_from_wire(
                self.observation_space, info[FINAL_OBSERVATION]
            )
        return apply_types(info, note)

    def render(self) -> Any:
        """The server env's ``render()``: a ``uint8`` array ``[H, W, 3]`` for
        ``"rgb_array"``, a string for ``"ansi"``, ``None`` without a render mode."""
        return read_render(self._post(routes.RENDER, render_request(self.env_key)))

    def close(self) -> None:
        """Free the server's env and the connection. Idempotent."""
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    @property
    def closed(self) -> bool:
        return self._session.closed

    def __repr__(self) -> str:
        return f"RemoteEnv({self.env_name!r} at {self._session.transport.base_url})"
