"""The inference engine: per-agent contexts over one trained policy, acting in batches.

Per-agent state follows the sequence model of inference servers such as Triton: an agent
id is a sequence's correlation id, scoped to the caller's API key and an optional
``session`` name (a :class:`Scope`). The first observation of an id starts its sequence,
listing it in ``terminated_agent_ids`` ends it (its next observation starts a new
episode), and an id left idle longer than the idle timeout is evicted (its next
observation starts afresh).

Every agent keeps its last ``max_input_states`` observations and one slot of the policy's
key/value cache (:class:`~agentgpt.policy.slots.SlotContexts`). An action is read from the
agent's last K observations of its current episode, the window the in-process
:class:`~agentgpt.agent.agent.Actor` acts from, with the same result:

* while an episode holds at most K observations, each step appends one token to the
  agent's cached context (one new position, however long the context);
* once the window slides past the episode's first observation, every step reads a new
  K-observation window, computed from the stored observations as the actor computes it
  (K positions, in the same batched pass as the other agents).

A new control value for an agent, or new weights, invalidate its cached keys and values
(they depend on both); its next step recomputes them from the stored observations. All
agents of one :meth:`PolicyEngine.act` call, whatever their requests, go through one
forward pass per kind of step (cached, sliding window, and one per rebuilt length).

The engine is not thread-safe: the server calls it from one thread at a time (its event
loop or its inference thread, never both at once), and
:class:`~agentgpt.serve.client.LocalGPTAPI` from its caller's thread.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector.utils import batch_space, iterate

from agentgpt import wire
from agentgpt._version import __version__
from agentgpt.agent.agent import Agent
from agentgpt.agent.checkpoint import CHECKPOINT_FILE, load_agent
from agentgpt.policy.encoders import ObsTensors
from agentgpt.policy.slots import SlotContexts
from agentgpt.policy.spaces import ObsParts
from agentgpt.serve import requests as rq
from agentgpt.service.errors import ApiError, api_error

__all__ = [
    "DEFAULT_AGENT_IDLE_TIMEOUT",
    "DEFAULT_MAX_AGENTS",
    "ActRequest",
    "LoadedModel",
    "PolicyEngine",
    "find_model_dir",
    "load_model",
]

DEFAULT_MAX_AGENTS = 1024
DEFAULT_AGENT_IDLE_TIMEOUT = 600.0

_ACT_FIELDS = frozenset(
    {"method", "session", "agent_ids", "observations", "terminated_agent_ids", "deterministic"}
)
_SAMPLE_FIELDS = frozenset({"method", "session", "agent_ids"})
_SET_FIELDS = frozenset({"method", "session", "value", "agent_ids"})
_GET_FIELDS = frozenset({"method", "session", "agent_id", "agent_ids"})


# ---------------------------------------------------------------------- the model


def find_model_dir(path: str | Path) -> Path:
    """The directory holding ``checkpoint.pt``: ``path`` itself, or its only
    subdirectory that holds one (a model archive unpacked with its run directory)."""
    path = Path(path)
    if (path / CHECKPOINT_FILE).is_file():
        return path
    if path.is_dir():
        found = [d for d in sorted(path.iterdir()) if (d / CHECKPOINT_FILE).is_file()]
        if len(found) == 1:
            return found[0]
    raise FileNotFoundError(f"no {CHECKPOINT_FILE} in {path} (a run or model directory)")


def checksum(path: Path) -> str:
    """``sha256:<hex>`` of a checkpoint file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


@dataclass
class LoadedModel:
    """A trained agent with what ``/info`` says about it."""

    agent: Agent
    checksum: str
    run_name: str
    path: Path
    mtime_ns: int


def load_model(path: str | Path) -> LoadedModel:
    """Load the agent of a run or model directory (trusted local files only)."""
    directory = find_model_dir(path)
    file = directory / CHECKPOINT_FILE
    stat = file.stat()
    digest = checksum(file)
    agent = load_agent(directory)
    return LoadedModel(agent, digest, directory.name, directory, stat.st_mtime_ns)


# ---------------------------------------------------------------------- state


@dataclass
class Scope:
    """The agents of one (API key, session) pair and the session's settings."""

    owner: str
    session: str
    k: int
    rng: np.random.Generator
    generator: torch.Generator
    control: float = 1.0
    #: Agent id -> its slot (the row of the engine's per-agent state arrays).
    agents: dict[rq.AgentId, int] = field(default_factory=dict)
    last_used: float = 0.0


@dataclass
class ActRequest:
    """One validated ``select_action`` call, ready for :meth:`PolicyEngine.act`."""

    owner: str
    session: str
    agent_ids: list[rq.AgentId]
    parts: ObsParts
    terminated: list[rq.AgentId]
    deterministic: bool
    #: The spaces it was validated against (a reload with new spaces refuses it).
    observation_space: gymnasium.Space

    @property
    def scope_key(self) -> tuple[str, str]:
        """The (owner, session) its agent ids are scoped to."""
        return (self.owner, self.session)

    @functools.cached_property
    def id_set(self) -> frozenset[rq.AgentId]:
        """The ids a concurrent request of the same scope must not share with this one in
        a batch (ids are strings or integers, so ``1`` and ``"1"`` stay apart)."""
        return frozenset(self.agent_ids).union(self.terminated)


def _seed_of(seed: int, owner: str, session: str) -> int:
    text = f"{seed}\x00{owner}\x00{session}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


# ---------------------------------------------------------------------- the engine


class PolicyEngine:
    """Acts for many agents, in many sessions, from one trained policy."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_agents: int = DEFAULT_MAX_AGENTS,
        max_agents_per_session: int | None = None,
        agent_idle_timeout: float = DEFAULT_AGENT_IDLE_TIMEOUT,
        seed: int = 0,
    ) -> None:
        if max_agents < 1:
            raise ValueError("max_agents must be at least 1")
        if agent_idle_timeout <= 0:
            raise ValueError("agent_idle_timeout must be positive")
        self.max_agents = int(max_agents)
        self.max_agents_per_session = int(max_agents_per_session or max_agents)
        if not 1 <= self.max_agents_per_session <= self.max_agents:
            raise ValueError("max_agents_per_session must be in [1, max_agents]")
        self.agent_idle_timeout = float(agent_idle_timeout)
        #: Sessions held at once (an empty one lasts until it has been idle for the timeout).
        self.max_sessions = max(DEFAULT_MAX_AGENTS, self.max_agents)
        self.seed = int(seed)
        self.scopes: dict[tuple[str, str], Scope] = {}
        #: Who named each session first: another key naming it is refused.
        self.session_owner: dict[str, str] = {}
        self.generation = 0
        self.reloads = 0
        self.stats = {"forward_passes": 0, "act_calls": 0, "requests": 0, "agents": 0}
        # Every agent's state, by cache slot, so that a batch reads and updates it in a few
        # array operations whatever its size:
        slots = self.max_agents
        #: Observations of the current episode so far (the ring holds the last max_k).
        self._steps = np.zeros(slots, np.int64)
        #: Tokens of the current window in the cache slot, valid only for the model
        #: generation in ``_generations`` and the control value in ``_cached_controls``
        #: (-1: the slot holds none).
        self._cached = np.zeros(slots, np.int64)
        self._generations = np.full(slots, -1, np.int64)
        self._cached_controls = np.full(slots, -1.0, np.float64)
        #: Per-agent control value; NaN follows the session's.
        self._controls = np.full(slots, np.nan, np.float64)
        self._last_used = np.zeros(slots, np.float64)
        #: Per slot, its image rings ``[max_k, *shape]`` (uint8), one per image input.
        self._images: list[list[np.ndarray]] = [[] for _ in range(slots)]
        self._install(model)
        self._free = list(range(self.max_agents - 1, -1, -1))

    # ------------------------------------------------------------- model swap
    def _install(self, model: LoadedModel) -> None:
        self.model = model
        self.policy = model.agent.policy.eval()
        self.normalizer = model.agent.obs_normalizer
        self.observation_space = model.agent.observation_space
        self.action_space = model.agent.action_space
        self.obs_codec = self.policy.obs_codec
        self.action_codec = self.policy.action_codec
        self.max_k = int(self.policy.max_input_states)
        self.trained_k = int(self.policy.num_input_states)
        self.contexts = SlotContexts(self.policy, self.max_agents, self.max_k)
        codec = self.obs_codec
        shapes = (
            (self.max_agents, self.max_k, codec.vector_dim),
            (self.max_agents, self.max_k, len(codec.discrete_sizes)),
        )
        if getattr(self, "_vectors", None) is None or self._vectors.shape != shapes[0]:
            # Every agent's stored vector and discrete observations, by cache slot, so a
            # batch's windows are gathered in one indexing (images stay per agent).
            self._vectors = np.zeros(shapes[0], np.float32)
        if getattr(self, "_discretes", None) is None or self._discretes.shape != shapes[1]:
            self._discretes = np.zeros(shapes[1], np.int64)
        # The stored vectors normalized with this model's statistics, as the actor keeps
        # its window: each observation is normalized once, when it arrives.
        rows = self.max_agents * self.max_k
        self._normalized = np.array(
            self.normalizer.normalize(self._vectors.reshape(rows, codec.vector_dim)),
            np.float32,
        ).reshape(shapes[0])
        self._observation_wire = wire.space_to_wire(self.observation_space)
        self._action_wire = wire.space_to_wire(self.action_space)
        self._batched_actions: dict[int, gymnasium.Space] = {}
        self.generation += 1

    def swap(self, model: LoadedModel) -> bool:
        """Act with ``model`` from the next call on. Agents keep their contexts when the
        spaces and the longest context are unchanged; returns whether they were kept."""
        old_obs, old_act, old_max = self.observation_space, self.action_space, self.max_k
        self._install(model)
        self.reloads += 1
        keep = (
            old_obs == self.observation_space
            and old_act == self.action_space
            and old_max == self.max_k
        )
        for scope in self.scopes.values():
            scope.k = min(scope.k, self.max_k)
            if not keep:
                self._free.extend(scope.agents.values())
                scope.agents.clear()
        return keep

    # ------------------------------------------------------------- scopes
    def scope(self, owner: str, session: str, now: float | None = None) -> Scope:
        """The caller's scope for ``session`` (made on first use)."""
        holder = self.session_owner.get(session)
        if holder is not None and holder != owner and session:
            raise api_error(
                "session_forbidden",
                f"session {session!r} belongs to another API key; name another session",
            )
        key = (owner, session)
        scope = self.scopes.get(key)
        if scope is None:
            if len(self.scopes) >= self.max_sessions:
                self.evict_idle(now)
            if len(self.scopes) >= self.max_sessions:
                raise api_error(
                    "too_many_agents",
                    f"the server holds {len(self.scopes)} sessions, its limit; retry when "
                    "idle ones have expired",
                )
            seed = _seed_of(self.seed, owner, session)
            scope = Scope(
                owner,
                session,
                self.trained_k,
                np.random.default_rng(seed),
                torch.Generator().manual_seed(seed % (2**63)),
            )
            self.scopes[key] = scope
            if session:
                self.session_owner[session] = owner
        scope.last_used = time.monotonic() if now is None else now
        return scope

    def _new_agent(self, now: float) -> int:
        """A free slot, its state that of a new agent (its stored observations are
        never read before this agent's own overwrite them)."""
        slot = self._free.pop()
        self._steps[slot] = 0
        self._cached[slot] = 0
        self._generations[slot] = -1
        self._cached_controls[slot] = -1.0
        self._controls[slot] = np.nan
        self._last_used[slot] = now
        shapes = self.obs_codec.image_shapes
        images = self._images[slot]
        if len(images) != len(shapes) or any(
            ring.shape != (self.max_k, *shape) for ring, shape in zip(images, shapes, strict=False)
        ):
            self._images[slot] = [np.zeros((self.max_k, *s), np.uint8) for s in shapes]
        return slot

    def _drop(self, scope: Scope, agent_id: rq.AgentId) -> None:
        slot = scope.agents.pop(agent_id, None)
        if slot is not None:
            self._free.append(slot)

    def evict_idle(self, now: float | None = None) -> int:
        """Forget agents idle longer than the timeout, and sessions left empty and idle;
        returns how many agents were evicted."""
        now = time.monotonic() if now is None else now
        deadline = now - self.agent_idle_timeout
        evicted = 0
        for key, scope in list(self.scopes.items()):
            if scope.agents:
                slots = np.fromiter(scope.agents.values(), np.int64, len(scope.agents))
                idle = np.flatnonzero(self._last_used[slots] < deadline)
                if len(idle):
                    ids = list(scope.agents)
                    for j in idle.tolist():
                        self._drop(scope, ids[j])
                    evicted += len(idle)
            if not scope.agents and scope.last_used < deadline:
                del self.scopes[key]
                if scope.session and self.session_owner.get(scope.session) == scope.owner:
                    del self.session_owner[scope.session]
        return evicted

    @property
    def num_agents(self) -> int:
        return self.max_agents - len(self._free)

    # ------------------------------------------------------------- select_action
    def prepare_act(self, owner: str, payload: Mapping[str, Any]) -> ActRequest:
        """Validate a ``select_action`` body and encode its observations (no state is
        touched, so a refused request changes nothing)."""
        rq.refuse_unknown_fields(payload, _ACT_FIELDS)
        session = rq.parse_session(payload)
        ids = rq.parse_agent_ids(payload)
        assert ids is not None
        if not ids:
            raise rq.invalid("agent_ids must list at least one agent")
        if len(ids) > self.max_agents_per_session:
            raise api_error(
                "too_many_agents",
                f"{len(ids)} agents in one call; a session holds at most "
                f"{self.max_agents_per_session}",
            )
        terminated = rq.parse_agent_ids(payload, "terminated_agent_ids", required=False) or []
        deterministic = rq.parse_bool(payload, "deterministic", True)
        space = self.observation_space
        batch = rq.parse_observations(space, payload, ids)
        parts = self.obs_codec.encode(batch, len(ids))
        return ActRequest(owner, session, ids, parts, terminated, deterministic, space)

    def act(self, requests: list[ActRequest]) -> list[dict[str, Any] | ApiError]:
        """Actions for every request, through as few forward passes as possible; each
        entry is the answer or the error of the request at its index. The requests'
        agents must be distinct (the server batches only such requests)."""
        now = time.monotonic()
        results: list[dict[str, Any] | ApiError | None] = [None] * len(requests)
        # Per admitted request: its index, its agents' slots (in its order), its scope.
        admitted: list[tuple[int, np.ndarray, Scope]] = []
        for r, request in enumerate(requests):
            try:
                slots, scope = self._admit(request, now)
            except ApiError as error:
                results[r] = error
            else:
                admitted.append((r, slots, scope))
        if admitted:
            self._forward(requests, admitted, results)
        self.stats["act_calls"] += 1
        self.stats["requests"] += len(requests)
        self.stats["agents"] += sum(len(slots) for _, slots, _ in admitted)
        return [r if r is not None else api_error("internal_error", "no answer") for r in results]

    def _admit(self, request: ActRequest, now: float) -> tuple[np.ndarray, Scope]:
        """Start, end and extend the request's agents; their slots, in its order."""
        space = request.observation_space
        if space is not self.observation_space and space != self.observation_space:
            raise rq.invalid(
                "the served model changed its observation space during this call; "
                "read /info and send observations of the new space"
            )
        scope = self.scope(request.owner, request.session, now)
        agents = scope.agents
        ids = request.agent_ids
        found = list(map(agents.get, ids))
        new = (
            [i for i, slot in zip(ids, found, strict=True) if slot is None] if None in found else []
        )
        if len(agents) + len(new) > self.max_agents_per_session:
            raise api_error(
                "too_many_agents",
                f"session {request.session!r} would hold {len(agents) + len(new)} agents;"
                f" the limit is {self.max_agents_per_session} (end agents with "
                "terminated_agent_ids, or let idle ones expire)",
            )
        if len(new) > len(self._free):
            raise api_error(
                "too_many_agents",
                f"the server holds {self.num_agents} agents of {self.max_agents}; "
                "retry when idle agents have expired",
            )
        for agent_id in request.terminated:
            slot = agents.get(agent_id)
            if slot is not None:  # its next observation starts a new episode
                self._steps[slot] = 0
                self._cached[slot] = 0
        if new:
            for i, slot in enumerate(found):
                if slot is None:
                    found[i] = agents[ids[i]] = self._new_agent(now)
        slots = np.array(found, np.int64)
        parts = request.parts
        index = self._steps[slots] % self.max_k
        self._vectors[slots, index] = parts.vector
        self._discretes[slots, index] = parts.discrete
        if parts.images:
            for i, (slot, position) in enumerate(zip(slots.tolist(), index.tolist(), strict=True)):
                for ring, frames in zip(self._images[slot], parts.images, strict=True):
                    ring[position] = frames[i]
        self._steps[slots] += 1
        self._last_used[slots] = now
        return slots, scope

    @torch.inference_mode()
    def _forward(
        self,
        requests: list[ActRequest],
        admitted: list[tuple[int, np.ndarray, Scope]],
        results: list[Any],
    ) -> None:
        codec = self.action_codec
        sizes = [len(slots) for _, slots, _ in admitted]
        # Per row of the batch (the admitted requests' agents, in order): its slot, and
        # its session's context length, control value and mode (scalars for one request).
        k: int | np.ndarray
        session_control: float | np.ndarray
        deterministic: bool | np.ndarray
        if len(admitted) == 1:
            r, slots, scope = admitted[0]
            k, session_control = scope.k, scope.control
            deterministic = requests[r].deterministic
        else:
            slots = np.concatenate([slots for _, slots, _ in admitted])
            k = np.repeat([scope.k for _, _, scope in admitted], sizes)
            session_control = np.repeat([scope.control for _, _, scope in admitted], sizes)
            deterministic = np.repeat([requests[r].deterministic for r, _, _ in admitted], sizes)
        count = len(slots)
        steps = self._steps[slots]
        # The new observations, normalized once for the whole batch (``_admit`` stored them).
        latest = (steps - 1) % self.max_k
        self._normalized[slots, latest] = self.normalizer.normalize(self._vectors[slots, latest])
        own = self._controls[slots]
        controls = np.where(np.isnan(own), session_control, own)
        # Rows by how they are computed: ("extend", 1) adds the new token to the cached
        # context; ("rebuild", w) recomputes a w-token window into the cache, to be
        # extended next step; ("window", K) reads a full, sliding K-token window that the
        # next step replaces anyway, so it is computed without touching the cache. As one
        # code per row: 0 extends, w in [1, max_k] rebuilds w tokens, max_k + 1 + K reads
        # a K-token window.
        fresh = (
            (self._generations[slots] == self.generation)
            & (self._cached_controls[slots] == controls)
            & (steps <= k)
            & (self._cached[slots] == steps - 1)
        )
        codes = np.where(fresh, 0, np.where(steps >= k, self.max_k + 1 + k, steps))
        groups: list[tuple[int, np.ndarray | None]]  # (code, rows; None: every row)
        if (codes == codes[0]).all():
            groups = [(int(codes[0]), None)]
        else:  # in the order of their first rows
            values, firsts, inverse = np.unique(codes, return_index=True, return_inverse=True)
            groups = [(int(values[g]), np.flatnonzero(inverse == g)) for g in np.argsort(firsts)]
        disc = np.zeros((count, codec.num_discrete), np.int64)
        cont = np.zeros((count, codec.continuous_dim), np.float32)
        for code, members in groups:
            if code == 0:
                how, length = "extend", 1
            elif code > self.max_k:
                how, length = "window", code - self.max_k - 1
            else:
                how, length = "rebuild", code
            group = slots if members is None else slots[members]
            group_controls = controls if members is None else controls[members]
            control = torch.from_numpy(group_controls.astype(np.float32))
            obs, starts = self._tokens(group, length)
            if how == "window":
                valid = torch.ones(len(group), length, dtype=torch.bool)
                out = self.policy.forward_window(obs, valid, control)
            else:
                # A rebuilt window, or a new episode's first token, starts an empty slot.
                empty = group if how == "rebuild" else group[self._cached[group] == 0]
                if len(empty):
                    self.contexts.clear(torch.from_numpy(empty.copy()))
                out = self.contexts.extend(
                    torch.from_numpy(group.copy()),
                    obs,
                    starts,
                    control.unsqueeze(1).expand(-1, length).contiguous(),
                )
            self.stats["forward_passes"] += 1
            mode_d, mode_c = out.dist.mode()
            d, c = mode_d.numpy(), mode_c.numpy()
            if isinstance(deterministic, np.ndarray):
                stochastic = np.flatnonzero(
                    ~(deterministic if members is None else deterministic[members])
                )
            else:
                stochastic = np.arange(0 if deterministic else len(group))
            if len(stochastic):
                # The session stream of the group's first stochastic row draws them all.
                first = int(stochastic[0] if members is None else members[stochastic[0]])
                scope = admitted[int(np.searchsorted(np.cumsum(sizes), first, "right"))][2]
                sample_d, sample_c = out.dist.sample(scope.generator)
                d, c = d.copy(), c.copy()
                d[stochastic] = sample_d.numpy()[stochastic]
                c[stochastic] = sample_c.numpy()[stochastic]
            if members is None:
                disc[:], cont[:] = d, c
            else:
                disc[members], cont[members] = d, c
            # Tokens of the current window now in the slot (-1: the slot holds none).
            if how == "extend":
                self._cached[group] += 1
            else:
                self._cached[group] = length if how == "rebuild" else -1
            self._generations[group] = self.generation
            self._cached_controls[group] = group_controls
        # Control mixing and the answers, per request (each with its session's stream).
        start = 0
        for (r, _, scope), size in zip(admitted, sizes, strict=True):
            end = start + size
            d, c = disc[start:end], cont[start:end]
            codec.mix_random(scope.rng, d, c, controls[start:end])
            actions = codec.to_env(d, c)
            results[r] = {"actions": self.actions_to_wire(actions, size)}
            start = end

    def _tokens(self, slots: np.ndarray, steps: int) -> tuple[ObsTensors, torch.Tensor]:
        """The last ``steps`` stored observations of the agents in ``slots``: ``[B,
        steps, ...]`` tokens (normalized) and their episode-start flags."""
        ends = self._steps[slots]
        positions = ends[:, None] - steps + np.arange(steps)  # episode step of each token
        index = positions % self.max_k
        # One gather per input, from the [slots * max_k, ...] view of its rings.
        flat = slots[:, None] * self.max_k + index
        rows = self.max_agents * self.max_k
        vector = self._normalized.reshape(rows, self._normalized.shape[-1])[flat]
        discrete = self._discretes.reshape(rows, self._discretes.shape[-1])[flat]
        images = []
        if self.obs_codec.image_shapes:
            pick = np.arange(len(slots))[:, None]
            rings = [self._images[slot] for slot in slots.tolist()]
            images = [
                np.stack([ring[j] for ring in rings])[pick, index]
                for j in range(len(self.obs_codec.image_shapes))
            ]
        obs = ObsTensors(
            torch.from_numpy(vector),
            torch.from_numpy(discrete),
            [torch.from_numpy(f) for f in images],
        )
        starts = torch.zeros(len(slots), steps, dtype=torch.bool)
        starts[:, 0] = True
        if steps == 1:
            starts[:, 0] = torch.from_numpy(ends == 1)
        return obs, starts

    def actions_to_wire(self, actions: Any, count: int) -> Any:
        """A batch of actions as the answer carries it: one stacked array for array
        spaces (in JSON, the list of per-agent values), else a list of per-agent values."""
        space = self.action_space
        if isinstance(
            space,
            (
                gymnasium.spaces.Discrete,
                gymnasium.spaces.MultiDiscrete,
                gymnasium.spaces.MultiBinary,
                gymnasium.spaces.Box,
            ),
        ):
            return np.ascontiguousarray(actions)
        batched = self._batched_actions.get(count)
        if batched is None:
            batched = self._batched_actions[count] = batch_space(space, count)
        return [wire.value_to_wire(space, a) for a in iterate(batched, actions)]

    # ------------------------------------------------------------- other calls
    def sample_action(self, owner: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Uniformly random valid actions (the session's seeded stream)."""
        rq.refuse_unknown_fields(payload, _SAMPLE_FIELDS)
        scope = self.scope(owner, rq.parse_session(payload))
        ids = rq.parse_agent_ids(payload)
        assert ids is not None
        if len(ids) > self.max_agents_per_session:
            raise api_error("too_many_agents", f"{len(ids)} agents in one call")
        if not ids:
            return {"actions": []}
        d, c = self.action_codec.sample_random(scope.rng, len(ids))
        return {"actions": self.actions_to_wire(self.action_codec.to_env(d, c), len(ids))}

    def set_control_value(self, owner: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The session's control value, or that of the listed agents."""
        rq.refuse_unknown_fields(payload, _SET_FIELDS)
        session = rq.parse_session(payload)
        if "value" not in payload:
            raise rq.invalid("value is required: a control value in [0, 1]")
        value = rq.parse_control(payload["value"])
        ids = rq.parse_agent_ids(payload, required=False)
        scope = self.scope(owner, session)
        if ids is None:
            scope.control = value
            for slot in scope.agents.values():
                self._controls[slot] = np.nan
            return {"value": value}
        new = [i for i in ids if i not in scope.agents]
        if len(scope.agents) + len(new) > self.max_agents_per_session or len(new) > len(self._free):
            raise api_error("too_many_agents", "no room for the listed agents")
        now = time.monotonic()
        for agent_id in ids:
            slot = scope.agents.get(agent_id)
            if slot is None:
                slot = scope.agents[agent_id] = self._new_agent(now)
            self._controls[slot] = value
            self._last_used[slot] = now
        return {"value": value, "agent_ids": ids}

    def get_control_value(self, owner: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The session's control value, or one agent's (``agent_id``)."""
        rq.refuse_unknown_fields(payload, _GET_FIELDS)
        scope = self.scope(owner, rq.parse_session(payload))
        raw = payload.get("agent_id")
        if raw is None:
            ids = rq.parse_agent_ids(payload, required=False)
            if ids:
                values = [self._agent_control(scope, i) for i in ids]
                return {"values": values, "agent_ids": ids}
            return {"value": scope.control}
        return {"value": self._agent_control(scope, self._lookup_id(scope, raw))}

    def _agent_control(self, scope: Scope, agent_id: rq.AgentId) -> float:
        slot = scope.agents.get(agent_id)
        if slot is None or np.isnan(self._controls[slot]):
            return scope.control
        return float(self._controls[slot])

    @staticmethod
    def _lookup_id(scope: Scope, raw: Any) -> rq.AgentId:
        """An id from a query string (text): an id of that text, else that integer."""
        if isinstance(raw, str) and raw not in scope.agents:
            try:
                number = int(raw)
            except ValueError:
                return raw
            return number if number in scope.agents else raw
        return rq.parse_agent_ids({"agent_ids": [raw]})[0]  # type: ignore[index]

    def set_num_input_states(self, owner: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        rq.refuse_unknown_fields(payload, _SET_FIELDS - {"agent_ids"})
        scope = self.scope(owner, rq.parse_session(payload))
        if "value" not in payload:
            raise rq.invalid(f"value is required: a context length in [1, {self.max_k}]")
        scope.k = rq.parse_num_input_states(payload["value"], self.max_k)
        return {"value": scope.k}

    def get_num_input_states(self, owner: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        rq.refuse_unknown_fields(payload, _GET_FIELDS - {"agent_id", "agent_ids"})
        scope = self.scope(owner, rq.parse_session(payload))
        return {"value": scope.k, "max": self.max_k}

    def info(
        self, owner: str, payload: Mapping[str, Any], limits: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Spaces, context lengths, the model and the limits clients can see."""
        rq.refuse_unknown_fields(payload, frozenset({"method", "session"}))
        scope = self.scope(owner, rq.parse_session(payload))
        return {
            "observation_space": self._observation_wire,
            "action_space": self._action_wire,
            "num_input_states": scope.k,
            "max_input_states": self.max_k,
            "trained_num_input_states": self.trained_k,
            "control_value": scope.control,
            "model_checksum": self.model.checksum,
            "run_name": self.model.run_name,
            "env_id": self.model.agent.env.env_id,
            "version": __version__,
            "reloads": self.reloads,
            "limits": {
                "max_agents_per_session": self.max_agents_per_session,
                "max_agents": self.max_agents,
                "max_sessions": self.max_sessions,
                "agent_idle_timeout_s": self.agent_idle_timeout,
                "idle_agents": "evicted; the next observation of an evicted agent starts a new context",
                **limits,
            },
            "stats": {**self.stats, "agents_held": self.num_agents},
        }
