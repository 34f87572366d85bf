"""Adapters give every kind of env one request-level interface: ``reset``, ``step`` and
``render``.

Each adapter takes wire values in (already decoded, not yet typed), returns plain response
maps ready for :func:`agentgpt.wire.encode`, validates actions against the action space,
and implements the autoreset mode chosen at make time. Single-agent envs get the three
modes here (Gymnasium's own ``Autoreset`` wrapper only knows next-step); vector envs get
them from Gymnasium's vector classes; multi-agent envs get them here over PettingZoo's
``ParallelEnv``.

Answers of single-agent and vector envs carry type notes (``types``) for the values whose
Python or NumPy types the wire forms lose (:mod:`agentgpt.wire.pytypes`), so that a client
can hand back exactly what the env returned.

Adapter methods are blocking and run in a worker thread; the caller serializes calls on one
adapter. Exceptions raised by env code become ``env_error``; mistakes of the client become
the documented 4xx errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np

from agentgpt import wire
from agentgpt.envhost import errors
from agentgpt.envhost.membership import membership
from agentgpt.protocol.answers import metadata_to_wire, render_answer, reset_answer, step_answer
from agentgpt.protocol.autoreset import WIRE_INFO_NAMES
from agentgpt.protocol.fields import (
    AUTORESET_MODE,
    FINAL_INFO,
    FINAL_OBSERVATION,
    INFO,
    OBSERVATION,
    RESET_MASK,
    REWARD,
    TERMINATED,
    TRUNCATED,
)
from agentgpt.protocol.requests import short_repr

__all__ = [
    "EnvAdapter",
    "SingleEnvAdapter",
    "VectorEnvAdapter",
    "MultiAgentAdapter",
    "space_wire_or_error",
]


def space_wire_or_error(space: gymnasium.Space, what: str) -> dict[str, Any]:
    """``space_to_wire``, turning an unsupported space into a clear 422."""
    try:
        return wire.space_to_wire(space)
    except wire.UnsupportedSpaceError as exc:
        raise errors.unsupported_space(f"the env's {what} cannot be served: {exc}") from exc


def parse_action(
    space: gymnasium.Space,
    obj: Any,
    label: str = "action",
    contains: Callable[[Any], bool] | None = None,
) -> Any:
    """The Gymnasium value of a wire action, or a 422 naming the space and the value.

    ``contains``: the space's membership check for values read from the wire
    (:func:`~agentgpt.envhost.membership.membership`), ``space.contains`` by default.
    """
    try:
        value = wire.value_from_wire(space, obj)
    except wire.WireError as exc:
        raise errors.invalid_action(
            f"{label} {short_repr(obj)} is not a valid value of {space}: {exc}"
        ) from exc
    try:
        inside = (contains or space.contains)(value)
    except Exception:  # a space that chokes on the value has the same answer: not in it
        inside = False
    if not inside:
        raise errors.invalid_action(f"{label} {short_repr(obj)} is not in {space}")
    return value


def _to_wire(space: gymnasium.Space, value: Any, what: str) -> Any:
    """``value_to_wire`` for env output; a value outside the env's own space is its bug."""
    try:
        return wire.value_to_wire(space, value)
    except wire.WireError as exc:
        raise errors.env_error(
            wire.WireError(f"the env returned a {what} that does not fit {space}: {exc}")
        ) from exc


def _info_map(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    if type(info) is dict and not info:  # most steps' info: nothing to convert
        return info
    if not isinstance(info, dict):
        raise errors.env_error(TypeError(f"the env returned info of type {type(info).__name__}"))
    return wire.with_string_keys(info)


def _types(**notes: Any) -> dict[str, Any] | None:
    """The ``types`` of an answer: the fields' notes that are not ``None`` (``None`` if
    none is)."""
    types = {field: note for field, note in notes.items() if note is not None}
    return types or None


def _scalar_note(value: Any, canonical: type) -> Any:
    """The note of a reward or flag whose wire form reads back as ``canonical``."""
    return None if type(value) is canonical else wire.data_types(value) or _python_note(value)


def _python_note(value: Any) -> Any:
    # data_types leaves out what a plain reading gives back (an int, a bool); against a
    # float or bool reading those need saying.
    if type(value) is bool:
        return "bool"
    if type(value) is int:
        return "int"
    return None


_FLOAT64 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)


def _array_note(value: Any, dtype: np.dtype) -> Any:
    """The note of a vector env's reward or flags, read as an array of ``dtype``."""
    if type(value) is np.ndarray and value.dtype == dtype:
        return None
    return wire.data_types(value)


class EnvAdapter:
    """What the session layer needs from an env, whatever its kind."""

    #: ``"single"``, ``"vector"`` or ``"multi_agent"``.
    kind: str
    #: The env itself: a Gymnasium env or vector env, or a PettingZoo ``ParallelEnv``.
    env: Any
    num_envs: int
    autoreset_mode: str
    agents: list[str] | None
    observation_space_wire: Any
    action_space_wire: Any
    #: The env's ``metadata`` as plain data (one sub-env's for a vector env, without the
    #: vector env's own ``autoreset_mode``, which the make answer reports apart).
    metadata_wire: dict[str, Any]

    def reset(self, seed: Any, options: dict[str, Any] | None) -> dict[str, Any]:
        raise NotImplementedError

    def step(self, action: Any) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def render(self) -> dict[str, Any]:
        """The ``/render`` answer: what the env's ``render()`` returns, with its type note.

        Every kind renders the same way (a vector env returns one frame per sub-env). An
        env made without a render mode has nothing to render and answers ``None`` without
        being called, which spares it Gymnasium's warning.
        """
        if getattr(self.env, "render_mode", None) is None:
            return render_answer(None)
        try:
            output = wire.with_string_keys(self.env.render())
        except Exception as exc:
            raise errors.env_error(exc) from exc
        return render_answer(output, wire.data_types(output))

    def _bind_gymnasium(
        self, env: Any, autoreset_mode: str, seed: int | None, single_obs: Any, single_act: Any
    ) -> None:
        """Set-up shared by the Gymnasium adapters (single and vector): spaces, their
        wire forms, and the make seed kept for the first reset."""
        self.env = env
        self.autoreset_mode = autoreset_mode
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self._action_in_space = membership(self.action_space)
        self.observation_space_wire = space_wire_or_error(single_obs, "observation space")
        self.action_space_wire = space_wire_or_error(single_act, "action space")
        # A Gymnasium vector env adds ``autoreset_mode`` to its sub-envs' metadata (the
        # same dict, shared with their class), so it is left out for every kind.
        self.metadata_wire = metadata_to_wire(
            getattr(env, "metadata", None), leave_out=(AUTORESET_MODE,)
        )
        self._pending_seed = seed
        if seed is not None:
            self.action_space.seed(seed)
        self._has_reset = False

    def _reset_seed(self, seed: Any) -> Any:
        """The seed for this reset: the caller's, else (once) the seed given at make time."""
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return seed


class SingleEnvAdapter(EnvAdapter):
    """A ``gymnasium.Env`` with the three autoreset modes implemented here."""

    kind = "single"
    num_envs = 1
    agents = None

    def __init__(self, env: gymnasium.Env, autoreset_mode: str, seed: int | None) -> None:
        self._bind_gymnasium(env, autoreset_mode, seed, env.observation_space, env.action_space)
        self._episode_over = False

    def _reset_env(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Any, dict]:
        try:
            obs, info = self.env.reset(seed=seed, options=options)
        except Exception as exc:
            raise errors.env_error(exc) from exc
        self._has_reset = True
        self._episode_over = False
        return obs, _info_map(info)

    def reset(self, seed: Any, options: dict[str, Any] | None) -> dict[str, Any]:
        seed = self._reset_seed(seed)
        obs, info = self._reset_env(seed, options)
        obs_wire = _to_wire(self.observation_space, obs, "observation")
        return reset_answer(obs_wire, info, self._reset_types(obs, info))

    def _reset_types(self, obs: Any, info: dict[str, Any]) -> dict[str, Any] | None:
        return _types(
            **{
                OBSERVATION: wire.value_types(self.observation_space, obs),
                INFO: wire.data_types(info),
            }
        )

    def step(self, action: Any) -> dict[str, Any]:
        if not self._has_reset:
            raise errors.reset_needed("call /reset before the first /step")
        value = parse_action(self.action_space, action, contains=self._action_in_space)
        if self._episode_over:
            if self.autoreset_mode == "disabled":
                raise errors.reset_needed(
                    "the episode is over (terminated or truncated); call /reset to start a new one"
                )
            # next_step: this step only resets, ignoring the action (Gymnasium 1.x).
            obs, info = self._reset_env(None, None)
            return step_answer(
                _to_wire(self.observation_space, obs, "observation"),
                0.0,
                False,
                False,
                info,
                self._reset_types(obs, info),
            )
        try:
            obs, env_reward, env_terminated, env_truncated, info = self.env.step(value)
            reward, terminated = float(env_reward), bool(env_terminated)
            truncated = bool(env_truncated)
        except Exception as exc:
            raise errors.env_error(exc) from exc
        info = _info_map(info)
        obs_wire = _to_wire(self.observation_space, obs, "observation")
        obs_note = wire.value_types(self.observation_space, obs)
        info_note = wire.data_types(info) if info else None
        if terminated or truncated:
            if self.autoreset_mode == "same_step":
                new_obs, new_info = self._reset_env(None, None)
                final_notes = {FINAL_OBSERVATION: obs_note, FINAL_INFO: info_note}
                info = {**new_info, FINAL_OBSERVATION: obs_wire, FINAL_INFO: info}
                obs_wire = _to_wire(self.observation_space, new_obs, "observation")
                obs_note = wire.value_types(self.observation_space, new_obs)
                info_note = _merge_dict_notes(wire.data_types(new_info), final_notes)
            else:
                self._episode_over = True
        types = None
        if (
            obs_note is not None
            or info_note is not None
            or type(env_reward) is not float
            or type(env_terminated) is not bool
            or type(env_truncated) is not bool
        ):
            types = _types(
                **{
                    OBSERVATION: obs_note,
                    REWARD: _scalar_note(env_reward, float),
                    TERMINATED: _scalar_note(env_terminated, bool),
                    TRUNCATED: _scalar_note(env_truncated, bool),
                    INFO: info_note,
                }
            )
        return step_answer(obs_wire, reward, terminated, truncated, info, types)

    def close(self) -> None:
        self.env.close()


def _merge_dict_notes(note: Any, entries: dict[str, Any]) -> Any:
    """A dict note with ``entries`` (those not ``None``) added to ``note``'s."""
    merged = dict(note["dict"]) if note is not None else {}
    merged.update((key, entry) for key, entry in entries.items() if entry is not None)
    return {"dict": merged} if merged else None


class VectorEnvAdapter(EnvAdapter):
    """A ``gymnasium.vector.VectorEnv``; autoreset is Gymnasium's own.

    On the wire, same-step mode's ``final_obs`` / ``_final_obs`` infos are renamed to
    ``final_observation`` / ``_final_observation``, the pre-1.0 names the protocol uses
    (in place: the info keeps Gymnasium's key order).
    """

    kind = "vector"
    agents = None

    def __init__(
        self, venv: gymnasium.vector.VectorEnv, autoreset_mode: str, seed: int | None
    ) -> None:
        self.num_envs = int(venv.num_envs)
        self._bind_gymnasium(
            venv, autoreset_mode, seed, venv.single_observation_space, venv.single_action_space
        )
        self._episode_over = np.zeros(self.num_envs, dtype=bool)
        self._single_observation_space = venv.single_observation_space

    def reset(self, seed: Any, options: dict[str, Any] | None) -> dict[str, Any]:
        """``seed`` and ``options`` as :func:`~agentgpt.protocol.requests.parse_reset`
        reads them for a vector env (``options["reset_mask"]``: a boolean array)."""
        mask = options.get(RESET_MASK) if options else None
        seed = self._reset_seed(seed)
        try:
            obs, info = self.env.reset(seed=seed, options=options)
        except Exception as exc:
            raise errors.env_error(exc) from exc
        self._has_reset = True
        if mask is None:
            self._episode_over[:] = False
        else:
            self._episode_over[mask] = False
        info = self._wire_info(info)
        types = _types(
            **{
                OBSERVATION: wire.value_types(self.observation_space, obs),
                INFO: self._info_types(info),
            }
        )
        return reset_answer(_to_wire(self.observation_space, obs, "observation"), info, types)

    def _wire_info(self, info: Any) -> dict[str, Any]:
        info = _info_map(info)
        if any(name in info for name in WIRE_INFO_NAMES):
            info = {WIRE_INFO_NAMES.get(key, key): value for key, value in info.items()}
        return info

    def _info_types(self, info: dict[str, Any]) -> Any:
        """The note of a vector info in wire form. Its ``final_observation`` is read as an
        object array of the single observation space's values, so its note is relative to
        those; every other entry is untyped data."""
        if not info:
            return None
        entries = {}
        for key, value in info.items():
            if key == FINAL_OBSERVATION:
                note = self._final_observation_types(value)
            else:
                note = wire.data_types(value)
            if note is not None:
                entries[key] = note
        return {"dict": entries} if entries else None

    def _final_observation_types(self, final_obs: Any) -> Any:
        space = self._single_observation_space
        notes = [None if obs is None else wire.value_types(space, obs) for obs in final_obs]
        if all(note is None for note in notes):
            return None
        return {"array": "|O", "items": notes}

    def step(self, action: Any) -> dict[str, Any]:
        if not self._has_reset:
            raise errors.reset_needed("call /reset before the first /step")
        value = parse_action(self.action_space, action, contains=self._action_in_space)
        if self.autoreset_mode == "disabled" and self._episode_over.any():
            ended = np.flatnonzero(self._episode_over).tolist()
            raise errors.reset_needed(
                f"sub-envs {ended} ended and autoreset is disabled; call /reset"
                " (options.reset_mask selects the sub-envs to reset)"
            )
        try:
            obs, reward, terminated, truncated, info = self.env.step(value)
        except Exception as exc:
            raise errors.env_error(exc) from exc
        types = {
            OBSERVATION: wire.value_types(self.observation_space, obs),
            REWARD: _array_note(reward, _FLOAT64),
            TERMINATED: _array_note(terminated, _BOOL),
            TRUNCATED: _array_note(truncated, _BOOL),
        }
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        if self.autoreset_mode == "disabled":  # only that mode looks back at the ends
            self._episode_over = terminated | truncated
        info = self._wire_info(info)
        types[INFO] = self._info_types(info)
        return step_answer(
            _to_wire(self.observation_space, obs, "observation"),
            np.asarray(reward, dtype=np.float64),
            terminated,
            truncated,
            info,
            _types(**types),
        )

    def close(self) -> None:
        self.env.close()


def _possible_agents(env: Any) -> list[Any]:
    """``env.possible_agents`` as a list; a 422 naming the attribute when the env has none.

    The protocol orders every per-agent list by ``possible_agents``, so an env without it
    (or with an empty one) cannot be served.
    """
    try:
        possible = env.possible_agents
    except AttributeError:
        raise errors.invalid_argument(
            f"the PettingZoo env {type(env).__name__} has no `possible_agents` attribute; a"
            " multi-agent env is served by its `possible_agents` (every agent it can have),"
            " which its constructor must set"
        ) from None
    except Exception as exc:
        raise errors.env_error(exc) from exc
    if isinstance(possible, (str, bytes)) or not hasattr(possible, "__iter__"):
        raise errors.invalid_argument(
            f"the PettingZoo env {type(env).__name__} has a `possible_agents` of type"
            f" {type(possible).__name__}; it must be a list of agent ids"
        )
    possible = list(possible)
    if not possible:
        raise errors.invalid_argument(
            f"the PettingZoo env {type(env).__name__} has an empty `possible_agents`; it"
            " must list every agent the env can have"
        )
    return possible


class MultiAgentAdapter(EnvAdapter):
    """A PettingZoo ``ParallelEnv`` seen as lists in ``possible_agents`` order.

    ``None`` marks an agent that is not live; the episode is over when no agent is left,
    and the autoreset modes then apply to the whole env.
    """

    kind = "multi_agent"
    num_envs = 1

    def __init__(self, env: Any, autoreset_mode: str, seed: int | None) -> None:
        self.env = env
        self.autoreset_mode = autoreset_mode
        self._ids = _possible_agents(env)
        self.agents = [str(a) for a in self._ids]
        try:
            self.observation_spaces = [env.observation_space(a) for a in self._ids]
            self.action_spaces = [env.action_space(a) for a in self._ids]
            metadata = getattr(env, "metadata", None)
        except Exception as exc:
            raise errors.env_error(exc) from exc
        self.metadata_wire = metadata_to_wire(metadata)
        self.observation_space_wire = [
            space_wire_or_error(s, f"observation space of agent {a!r}")
            for a, s in zip(self.agents, self.observation_spaces, strict=True)
        ]
        self.action_space_wire = [
            space_wire_or_error(s, f"action space of agent {a!r}")
            for a, s in zip(self.agents, self.action_spaces, strict=True)
        ]
        self._pending_seed = seed
        if seed is not None:
            for offset, space in enumerate(self.action_spaces):
                space.seed(seed + offset)
        self._has_reset = False
        self._episode_over = False

    def _obs_list(self, observations: dict) -> list[Any]:
        return [
            _to_wire(space, observations[a], f"observation of agent {a!r}")
            if a in observations
            else None
            for a, space in zip(self._ids, self.observation_spaces, strict=True)
        ]

    def _per_agent(self, values: dict, convert: Any) -> list[Any]:
        return [convert(values[a]) if a in values else None for a in self._ids]

    def _reset_env(self, seed: int | None, options: dict | None) -> tuple[dict, dict]:
        try:
            observations, infos = self.env.reset(seed=seed, options=options)
        except Exception as exc:
            raise errors.env_error(exc) from exc
        self._has_reset = True
        self._episode_over = not self.env.agents
        return observations, infos or {}

    def reset(self, seed: Any, options: dict[str, Any] | None) -> dict[str, Any]:
        seed = self._reset_seed(seed)
        observations, infos = self._reset_env(seed, options)
        return reset_answer(self._obs_list(observations), self._info_list(infos))

    def _info_list(self, infos: dict) -> list[Any]:
        return self._per_agent(infos, _info_map)

    def _reset_step(self) -> dict[str, Any]:
        observations, infos = self._reset_env(None, None)
        live = [a in observations for a in self._ids]
        return step_answer(
            self._obs_list(observations),
            [0.0 if on else None for on in live],
            [False if on else None for on in live],
            [False if on else None for on in live],
            self._info_list(infos),
        )

    def _parse_actions(self, action: Any) -> dict[Any, Any]:
        if isinstance(action, tuple):
            action = list(action)
        if not isinstance(action, list) or len(action) != len(self._ids):
            raise errors.invalid_action(
                f"action must be a list of {len(self._ids)} entries, one per agent in the"
                f" order {self.agents} (null for absent agents), got {short_repr(action)}"
            )
        live = set(self.env.agents)
        actions = {}
        for agent, space, obj in zip(self._ids, self.action_spaces, action, strict=True):
            if agent not in live:
                continue
            if obj is None:
                raise errors.invalid_action(f"agent {agent!r} is active and needs an action")
            actions[agent] = parse_action(space, obj, f"action for agent {agent!r}")
        return actions

    def step(self, action: Any) -> dict[str, Any]:
        if not self._has_reset:
            raise errors.reset_needed("call /reset before the first /step")
        if self._episode_over:
            if self.autoreset_mode == "disabled":
                raise errors.reset_needed(
                    "the episode is over (no agent is left); call /reset to start a new one"
                )
            if self.autoreset_mode == "next_step":
                # Checked like any step's action (one entry per agent), then ignored.
                self._parse_actions(action)
                return self._reset_step()
        actions = self._parse_actions(action)
        try:
            observations, rewards, terminations, truncations, infos = self.env.step(actions)
            over = not self.env.agents
        except Exception as exc:
            raise errors.env_error(exc) from exc
        obs_list = self._obs_list(observations)
        reward_list = self._per_agent(rewards, float)
        terminated_list = self._per_agent(terminations, bool)
        truncated_list = self._per_agent(truncations, bool)
        info_list = self._info_list(infos)
        if over and self.autoreset_mode == "same_step":
            final_obs, final_infos = obs_list, info_list
            new_observations, new_infos = self._reset_env(None, None)
            info_list = []
            for i, agent in enumerate(self._ids):
                entry = None
                if agent in new_observations or agent in new_infos:
                    entry = dict(_info_map(new_infos.get(agent)))
                if agent in observations or agent in infos:
                    entry = entry if entry is not None else {}
                    entry[FINAL_OBSERVATION] = final_obs[i]
                    entry[FINAL_INFO] = final_infos[i] if final_infos[i] is not None else {}
                info_list.append(entry)
            obs_list = self._obs_list(new_observations)
        else:
            self._episode_over = over
        return step_answer(obs_list, reward_list, terminated_list, truncated_list, info_list)

    def close(self) -> None:
        self.env.close()
