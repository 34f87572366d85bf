"""``RemoteParallelEnv``: a PettingZoo parallel env hosted by an env server."""

from __future__ import annotations

from typing import Any

import gymnasium
from pettingzoo import ParallelEnv

from agentgpt.protocol import routes
from agentgpt.protocol.answers import read_made, read_render, read_reset, read_step
from agentgpt.protocol.fields import FINAL_OBSERVATION
from agentgpt.protocol.requests import make_request, render_request, reset_request, step_request
from agentgpt.remote.base_transport import BaseTransport
from agentgpt.remote.connect import TransportKind
from agentgpt.remote.session import RemoteSession
from agentgpt.remote.transport import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Encoding
from agentgpt.wire import value_from_wire, value_to_wire

__all__ = ["RemoteParallelEnv"]


class RemoteParallelEnv(ParallelEnv):
    """A :class:`pettingzoo.ParallelEnv` whose ``reset`` and ``step`` run on an env server.

    The wire speaks lists in ``possible_agents`` order with ``None`` for absent agents;
    this class turns them back into PettingZoo's dicts keyed by agent. An agent is in a
    step's dicts when the server reported it (it was live at the start of the step) and
    stays in ``agents`` until it is terminated or truncated. Agent ids are the server's
    ``agents`` names (strings). ``autoreset_mode`` applies to the whole env and is
    ``"disabled"`` by default: call ``reset()`` once ``agents`` is empty. With
    ``"next_step"`` the ``step({})`` after the end starts the next episode; with
    ``"same_step"`` the ending step already returns its first observations (the last ones
    are in each agent's ``info["final_observation"]``) and ``agents`` lists its agents.
    ``metadata`` is the server env's, and ``render()`` returns what its ``render()``
    returns (``"human"`` is refused: the server has no screen).
    ``transport``: how requests travel, ``"auto"`` (the default: the server's streaming
    session when it offers one, else HTTP/1.1), ``"http"``, ``"stream"``, or any
    :class:`~agentgpt.remote.BaseTransport` (its own URL, key, encoding and timeouts then
    apply).
    """

    metadata: dict[str, Any] = {"name": "remote_parallel_env", "render_modes": []}

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
            if made.agents is None:
                raise TypeError(
                    f"{env_name!r} is a single-agent env; use agentgpt.remote.RemoteEnv"
                )
            self.possible_agents: list[str] = made.agents
            self.observation_spaces: dict[str, gymnasium.Space] = dict(
                zip(self.possible_agents, made.observation_space, strict=True)
            )
            self.action_spaces: dict[str, gymnasium.Space] = dict(
                zip(self.possible_agents, made.action_space, strict=True)
            )
            self.autoreset_mode: str = made.autoreset_mode
            # An instance attribute: each remote env has its own server env's metadata.
            self.metadata = {**type(self).metadata, **made.metadata}
        except BaseException:
            self._session.close()  # nothing may be left running on the server
            raise
        self.env_name = env_name
        self.env_key: str = self._session.env_key
        self.render_mode = render_mode
        self.agents: list[str] = []
        if seed is not None:
            # The same per-agent seeds the server gives its own action spaces.
            for offset, agent in enumerate(self.possible_agents):
                self.action_spaces[agent].seed(seed + offset)
        self._post = self._session.transport.post

    def observation_space(self, agent: str) -> gymnasium.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.Space:
        return self.action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        wire_observations, wire_infos = read_reset(
            self._post(routes.RESET, reset_request(self.env_key, seed, options))
        )
        observations = self._observations(wire_observations)
        infos = self._infos(wire_infos, observations)
        self.agents = list(observations)
        return observations, infos

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, Any],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        wire_actions = [
            None
            if actions.get(agent) is None
            else value_to_wire(self.action_spaces[agent], actions[agent])
            for agent in self.possible_agents
        ]
        wire_observations, reward, terminated, truncated, wire_infos = read_step(
            self._post(routes.STEP, step_request(self.env_key, wire_actions))
        )
        present = [
            (i, agent) for i, agent in enumerate(self.possible_agents) if terminated[i] is not None
        ]
        observations = self._observations(wire_observations)
        rewards = {agent: float(reward[i]) for i, agent in present}
        terminations = {agent: bool(terminated[i]) for i, agent in present}
        truncations = {agent: bool(truncated[i]) for i, agent in present}
        infos = self._infos(wire_infos, terminations)
        self.agents = [
            agent for _, agent in present if not (terminations[agent] or truncations[agent])
        ]
        if not self.agents and self.autoreset_mode == "same_step":
            # The server already started the next episode: ``observations`` are its first.
            self.agents = [agent for agent in self.possible_agents if agent in observations]
        return observations, rewards, terminations, truncations, infos

    def _observations(self, wire_observations: list[Any]) -> dict[str, Any]:
        return {
            agent: value_from_wire(self.observation_spaces[agent], obs)
            for agent, obs in zip(self.possible_agents, wire_observations, strict=True)
            if obs is not None
        }

    def _infos(self, wire_infos: list[Any], agents: dict[str, Any]) -> dict[str, dict[str, Any]]:
        infos: dict[str, dict[str, Any]] = {}
        for agent, info in zip(self.possible_agents, wire_infos, strict=True):
            if info is None and agent not in agents:
                continue
            info = info or {}
            if FINAL_OBSERVATION in info:
                info[FINAL_OBSERVATION] = value_from_wire(
                    self.observation_spaces[agent], info[FINAL_OBSERVATION]
                )
            infos[agent] = info
        return infos

    def render(self) -> Any:
        """The server env's ``render()`` (``None`` without a render mode)."""
        return read_render(self._post(routes.RENDER, render_request(self.env_key)))

    def close(self) -> None:
        """Free the server's env and the connection. Idempotent."""
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    def __enter__(self) -> RemoteParallelEnv:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
