"""``UnityAdapter``: an ML-Agents env (``mlagents_envs.base_env.BaseEnv``) served as a
multi-agent env.

Unity agents come and go: each behaviour asks for decisions from whichever of its agents
need one, an agent's episode can end (``TerminalSteps``) in the same step in which it
asks for the first decision of its next one (``DecisionSteps``), and agents may spawn at
any time. The protocol's multi-agent shape is a fixed list of agents. The adapter bridges
the two with *slots*:

* Every behaviour known after the first reset gets ``max_agents`` slots, named
  ``"<behaviour>/<k>"``, in behaviour order. They are the env's ``possible_agents``.
* A slot holds one agent episode at a time. An agent (behaviour, agent id) that asks for
  a decision without a slot takes its previous slot if that is free, else the lowest
  free one, and keeps it until its episode ends.
* The step in which an agent's episode ends reports the slot with the terminal
  observation and reward, ``terminated`` true, or ``truncated`` when Unity interrupted
  the episode (its step limit). The slot is free again from the next answer. When the
  agent asked for its next decision in the same step, that new episode starts in
  another free slot in the same answer, so no decision waits and no observation is lost.
* A slot is ``None`` in an answer when its agent needs no decision in that step (or it
  holds none). Its ``info`` carries ``behavior``, ``agent_id`` (the id the Unity game
  gives the agent), ``group_id`` and ``group_reward`` (ML-Agents' group rewards are
  kept apart from the reward), and ``action_mask`` (true where an action is allowed) for
  discrete branches.

Autoreset modes: Unity scenes run on, and ``next_step`` and ``same_step`` both serve them
as they are: slots are filled again as agents start new episodes, and the scene is reset
only by ``/reset``. ``disabled`` keeps PettingZoo's episode: a slot whose agent finished
is not used again until ``/reset``, new agent episodes take slots not used yet in this
episode (or wait, acting with zero actions, when none is left), and the episode is over
once no slot has an agent asking for a decision.

Steps in which no agent needs a decision are skipped (stepped on, up to
``max_idle_steps``). Agents beyond a behaviour's slots stop the env with a clear
``env_error`` in the continuing modes; behaviours that appear after the first reset are
not served (their agents act with zero actions, and a warning is logged once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from agentgpt.envhost import errors
from agentgpt.envhost.adapters import EnvAdapter, _to_wire, parse_action, space_wire_or_error
from agentgpt.envhost.unity.launch import LaunchedUnity, UnityOptions
from agentgpt.envhost.unity.spaces import BehaviorLayout
from agentgpt.protocol.answers import reset_answer, step_answer
from agentgpt.protocol.requests import short_repr

__all__ = ["UnityAdapter", "is_unity_env"]

logger = logging.getLogger("agentgpt.envhost.unity")

_BASE_ENV_METHODS = ("behavior_specs", "get_steps", "set_actions", "step", "reset", "close")


def is_unity_env(env: Any) -> bool:
    """Whether ``env`` is an ML-Agents env: a :class:`LaunchedUnity`, or an object with
    ``BaseEnv``'s interface (``mlagents_envs.environment.UnityEnvironment`` and its
    kin), recognized without importing ``mlagents_envs``."""
    if isinstance(env, LaunchedUnity):
        return True
    return all(hasattr(type(env), name) for name in _BASE_ENV_METHODS)


def _unity_error(exc: BaseException) -> errors.ApiError:
    name = type(exc).__name__
    if name == "UnityTimeOutException":
        return errors.env_error(
            TimeoutError(f"Unity did not answer in time (the instance may hang or be gone): {exc}")
        )
    return errors.env_error(exc)


class _Behavior:
    """A served behaviour: its layout and its slot range."""

    def __init__(self, index: int, layout: BehaviorLayout, first: int, count: int) -> None:
        self.index = index
        self.layout = layout
        self.name = layout.name
        self.first = first
        self.count = count

    @property
    def slots(self) -> range:
        return range(self.first, self.first + self.count)


class UnityAdapter(EnvAdapter):
    """An ML-Agents env behind the multi-agent shape; see the module docstring."""

    kind = "multi_agent"
    num_envs = 1

    def __init__(
        self,
        env: Any,
        autoreset_mode: str,
        seed: int | None,
        options: UnityOptions | None = None,
    ) -> None:
        launched = env if isinstance(env, LaunchedUnity) else None
        self._launched = launched
        self.env = launched.env if launched is not None else env
        self.options = options or (launched.options if launched else UnityOptions())
        self.autoreset_mode = autoreset_mode
        self._failed: str | None = None
        self._has_reset = False
        self._episode_over = False
        self._warned: set[str] = set()
        # Unity tells its behaviours only once agents exist: reset now to learn them.
        try:
            self.env.reset()
            specs = dict(self.env.behavior_specs)
            steps = {name: self.env.get_steps(name) for name in specs}
        except Exception as exc:
            raise _unity_error(exc) from exc
        if not specs:
            raise errors.env_error(
                RuntimeError(
                    "the Unity env has no behaviour with an agent after a reset; a scene"
                    " needs at least one Agent whose Behavior Type is Default"
                )
            )
        wanted = self.options.max_agents
        if isinstance(wanted, Mapping) and set(wanted) - set(specs):
            raise errors.invalid_argument(
                f"kwargs.max_agents names behaviours the scene does not have:"
                f" {sorted(set(wanted) - set(specs))}; its behaviours are {list(specs)}"
            )
        self._fresh_steps: dict[str, Any] | None = steps
        self._behaviors: list[_Behavior] = []
        names: list[str] = []
        first = 0
        for index, (name, spec) in enumerate(specs.items()):
            try:
                layout = BehaviorLayout(name, spec, visual=self.options.visual)
            except ValueError as exc:
                raise errors.unsupported_space(str(exc)) from exc
            count = self._capacity(name, len(steps[name][0]))
            self._behaviors.append(_Behavior(index, layout, first, count))
            names += [f"{name}/{k}" for k in range(count)]
            first += count
        self._by_name = {b.name: b for b in self._behaviors}
        self.agents = names
        self._n = len(names)
        self._behavior_of = [b for b in self._behaviors for _ in b.slots]
        self.observation_spaces = [b.layout.observation_space for b in self._behavior_of]
        self.action_spaces = [b.layout.action_space for b in self._behavior_of]
        self.observation_space_wire = [
            space_wire_or_error(s, f"observation space of agent {a!r}")
            for a, s in zip(self.agents, self.observation_spaces, strict=True)
        ]
        self.action_space_wire = [
            space_wire_or_error(s, f"action space of agent {a!r}")
            for a, s in zip(self.agents, self.action_spaces, strict=True)
        ]
        self.metadata_wire = {
            "render_modes": [],
            "unity": {
                "behaviors": {
                    b.name: {"agents": [self.agents[i] for i in b.slots]} for b in self._behaviors
                },
                "port": None if launched is None else launched.port,
            },
        }
        self._pending_seed = seed
        if seed is not None:
            for offset, space in enumerate(self.action_spaces):
                space.seed(seed + offset)
        self._clear_slots()

    # ---------------------------------------------------------------- slots

    def _capacity(self, name: str, agents_now: int) -> int:
        wanted = self.options.max_agents
        if isinstance(wanted, Mapping):
            wanted = wanted.get(name)
        if wanted is None:
            return max(2, 2 * agents_now)
        return int(wanted)

    def _clear_slots(self) -> None:
        #: Slot -> (behaviour index, agent id) it holds, or None.
        self._holder: list[tuple[int, int] | None] = [None] * self._n
        self._slot_of: dict[tuple[int, int], int] = {}
        self._home: dict[tuple[int, int], int] = {}
        self._ending: set[int] = set()
        self._used: set[int] = set()
        self._live: set[int] = set()
        #: Behaviour name -> the agent ids of its last DecisionSteps, in order.
        self._asked: dict[str, np.ndarray] = {}

    def _allocate(self, behavior: _Behavior, key: tuple[int, int]) -> int | None:
        def free(i: int) -> bool:
            if self._holder[i] is not None or i in self._ending:
                return False
            return not (self.autoreset_mode == "disabled" and i in self._used)

        home = self._home.get(key)
        slot = home if home is not None and free(home) else None
        if slot is None:
            slot = next((i for i in behavior.slots if free(i)), None)
        if slot is None:
            if self.autoreset_mode == "disabled":
                return None  # waits until /reset, as PettingZoo agents that are done
            raise errors.env_error(
                RuntimeError(
                    f"behaviour {behavior.name!r} has more agents needing a decision than"
                    f" its {behavior.count} slots; make the env with a larger"
                    f" kwargs.max_agents (for example {{{behavior.name!r}:"
                    f" {2 * behavior.count}}})"
                )
            )
        self._holder[slot] = key
        self._slot_of[key] = slot
        self._home[key] = slot
        self._used.add(slot)
        return slot

    # ---------------------------------------------------------------- protocol

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise errors.env_error(
                RuntimeError(
                    f"this Unity instance failed earlier ({self._failed}); close the env and"
                    " make it again"
                )
            )

    def _fail(self, exc: BaseException) -> errors.ApiError:
        self._failed = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return _unity_error(exc)

    def reset(self, seed: Any, options: dict[str, Any] | None) -> dict[str, Any]:
        """Reset the Unity scene (``seed`` and ``options`` cannot reach a running Unity
        instance: its seed is the ``/make`` seed, given at launch)."""
        self._check_usable()
        self._pending_seed = None
        steps = self._fresh_steps
        self._fresh_steps = None
        try:
            if steps is None:
                self.env.reset()
                steps = self._read_steps()
            if not self._any_news(steps, terminal=False):
                steps = self._advance()
        except errors.ApiError:
            raise
        except Exception as exc:
            raise self._fail(exc) from exc
        self._clear_slots()
        self._has_reset = True
        answer = self._answer(steps, after_reset=True)
        return reset_answer(answer[0], answer[4])

    def step(self, action: Any) -> dict[str, Any]:
        self._check_usable()
        if not self._has_reset:
            raise errors.reset_needed("call /reset before the first /step")
        if self._episode_over:
            raise errors.reset_needed(
                "the episode is over (no agent is left); call /reset to start a new one"
            )
        actions = self._parse_actions(action)
        try:
            for behavior in self._behaviors:
                asked = self._asked.get(behavior.name)
                if asked is None or asked.size == 0:
                    continue
                self._set_actions(behavior, asked, actions)
            steps = self._advance()
        except errors.ApiError:
            raise
        except Exception as exc:
            raise self._fail(exc) from exc
        obs, reward, terminated, truncated, infos = self._answer(steps, after_reset=False)
        return step_answer(obs, reward, terminated, truncated, infos)

    def close(self) -> None:
        if self._launched is not None:
            self._launched.close()
        else:
            self.env.close()

    # ---------------------------------------------------------------- internals

    def _parse_actions(self, action: Any) -> dict[int, Any]:
        if isinstance(action, tuple):
            action = list(action)
        if not isinstance(action, list) or len(action) != self._n:
            raise errors.invalid_action(
                f"action must be a list of {self._n} entries, one per agent in the order"
                f" {short_repr(self.agents)} (null for agents that need no decision), got"
                f" {short_repr(action)}"
            )
        parsed: dict[int, Any] = {}
        for slot in sorted(self._live):
            obj = action[slot]
            agent = self.agents[slot]
            if obj is None:
                raise errors.invalid_action(
                    f"agent {agent!r} asked for a decision and needs an action"
                )
            parsed[slot] = parse_action(
                self.action_spaces[slot], obj, f"action for agent {agent!r}"
            )
        return parsed

    def _set_actions(self, behavior: _Behavior, asked: np.ndarray, actions: dict[int, Any]) -> None:
        from mlagents_envs.base_env import ActionTuple

        layout = behavior.layout
        continuous, discrete = layout.empty_actions(asked.size)
        for row, agent_id in enumerate(asked.tolist()):
            slot = self._slot_of.get((behavior.index, agent_id))
            if slot is not None and slot in actions:
                layout.write_action(actions[slot], row, continuous, discrete)
        self.env.set_actions(behavior.name, ActionTuple(continuous=continuous, discrete=discrete))

    def _read_steps(self) -> dict[str, Any]:
        steps = {}
        for name in self.env.behavior_specs:
            if name not in self._by_name:
                if name not in self._warned:
                    self._warned.add(name)
                    logger.warning(
                        "Unity behaviour %r appeared after the env was made; its agents are"
                        " not served (they act with zero actions)",
                        name,
                    )
                continue
            steps[name] = self.env.get_steps(name)
        return steps

    @staticmethod
    def _any_news(steps: dict[str, Any], terminal: bool = True) -> bool:
        return any(len(d) > 0 or (terminal and len(t) > 0) for d, t in steps.values())

    def _advance(self) -> dict[str, Any]:
        """Step Unity until an agent asks for a decision or ends its episode."""
        for _ in range(self.options.max_idle_steps):
            self.env.step()
            steps = self._read_steps()
            if self._any_news(steps):
                return steps
        raise errors.env_error(
            RuntimeError(
                f"no Unity agent asked for a decision or ended its episode in"
                f" {self.options.max_idle_steps} steps (kwargs.max_idle_steps)"
            )
        )

    def _info(self, behavior: _Behavior, steps: Any, row: int) -> dict[str, Any]:
        info: dict[str, Any] = {
            "behavior": behavior.name,
            "agent_id": int(steps.agent_id[row]),
            "group_id": int(steps.group_id[row]),
            "group_reward": float(steps.group_reward[row]),
        }
        return info

    def _answer(
        self, steps: dict[str, Any], after_reset: bool
    ) -> tuple[list, list, list, list, list]:
        n = self._n
        obs: list[Any] = [None] * n
        reward: list[Any] = [None] * n
        terminated: list[Any] = [None] * n
        truncated: list[Any] = [None] * n
        infos: list[Any] = [None] * n
        for slot in self._ending:
            key = self._holder[slot]
            self._holder[slot] = None
            if key is not None and self._slot_of.get(key) == slot:
                del self._slot_of[key]
        self._ending = set()
        self._live = set()
        self._asked = {}
        for behavior in self._behaviors:
            decisions, terminals = steps.get(behavior.name, (None, None))
            if decisions is None:
                continue
            layout = behavior.layout
            if not after_reset:
                for row, agent_id in enumerate(terminals.agent_id.tolist()):
                    key = (behavior.index, agent_id)
                    slot = self._slot_of.pop(key, None)
                    if slot is None:
                        continue  # an agent that never held a slot: nothing to end
                    interrupted = bool(terminals.interrupted[row])
                    obs[slot] = self._obs_wire(slot, layout.observation(terminals.obs, row))
                    reward[slot] = float(terminals.reward[row])
                    terminated[slot] = not interrupted
                    truncated[slot] = interrupted
                    infos[slot] = self._info(behavior, terminals, row)
                    self._ending.add(slot)
            asked = decisions.agent_id
            self._asked[behavior.name] = np.asarray(asked)
            for row, agent_id in enumerate(asked.tolist()):
                key = (behavior.index, agent_id)
                slot = self._slot_of.get(key)
                if slot is None:
                    slot = self._allocate(behavior, key)
                    if slot is None:
                        continue
                obs[slot] = self._obs_wire(slot, layout.observation(decisions.obs, row))
                reward[slot] = 0.0 if after_reset else float(decisions.reward[row])
                terminated[slot] = False
                truncated[slot] = False
                info = self._info(behavior, decisions, row)
                mask = layout.allowed_actions(decisions.action_mask, row)
                if mask is not None:
                    info["action_mask"] = mask
                infos[slot] = info
                self._live.add(slot)
        if self.autoreset_mode == "disabled":
            self._episode_over = not self._live
        else:
            self._episode_over = False
        return obs, reward, terminated, truncated, infos

    def _obs_wire(self, slot: int, value: Any) -> Any:
        return _to_wire(
            self.observation_spaces[slot], value, f"observation of agent {self.agents[slot]!r}"
        )
