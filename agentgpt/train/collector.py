"""The one rollout collector: it drives any asynchronous vector env with the policy.

Every env source speaks the protocol of :mod:`agentgpt.core.async_env`: a
:class:`~agentgpt.remote.fleet.Fleet` of env servers (answers arrive as hosts respond)
and a local Gymnasium vector env behind :class:`~agentgpt.core.local.LocalVectorEnv`
(every env answers at once). Each slot (a sub-env, or one agent of a multi-agent env)
advances on its own: each ``recv`` hands over whichever slots have news, their new
observations are encoded and acted on in ONE batched forward pass (each slot at its own
context length, see :class:`~agentgpt.policy.slots.SlotContexts`), and the actions go
straight back while other requests stay in flight.

Each slot fills its own *row* of ``rollout_steps`` tokens. Contexts are the windows the
update trains on (see :func:`~agentgpt.train.rollout.window_start`), so acting and
training see the same context for every sample and the PPO ratio starts at 1. Rows
follow NEXT_STEP autoreset: after ``terminated`` or ``truncated`` the slot's next token
is the episode's final observation, stored but not ``valid`` (never trained as a
decision, its reward dropped, its value the bootstrap a truncated episode needs), and
the token after it starts a new episode; ``starts`` marks episode and row starts. An
update takes the first ``num_envs`` rows completed, in completion order: with env
servers fast hosts contribute more rows and nobody waits for a slow one. A row completed
while older rows wait may hold tokens acted on by an earlier policy; PPO's importance
ratio uses the probabilities the actions were really sampled with, so that data stays
correct (``policy_lag`` in the metrics reports how old it is).

Faults never corrupt a trajectory. When a slot is *cut* (its host went down, its env
raised, its server restarted), the token whose action was never answered becomes a final
token (not ``valid``; its value bootstraps the step before it, which is marked
truncated), and the slot's row is closed there. The slot's next observation, after its
env was made again, starts a new episode in a new row: no context, GAE chain or row ever
joins data from before a cut to data after it.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import numpy as np
import torch

from agentgpt.agent.normalization import ObsNormalizer
from agentgpt.core.batching import take
from agentgpt.policy.encoders import ObsTensors
from agentgpt.policy.model import GPTPolicy
from agentgpt.policy.slots import SlotContexts
from agentgpt.train.reward_scaling import RewardScaler
from agentgpt.train.rollout import EpisodeRecord, Rollout, window_start

__all__ = ["Collector"]


class _Rows:
    """The row each slot is filling, ``[S, T, ...]``; finished rows are copied out.

    NumPy rather than torch: every tick writes a dozen fields at scattered ``(slot, t)``
    positions, and NumPy's fancy indexing costs a fraction of torch's per call.
    """

    def __init__(self, slots: int, steps: int, policy: GPTPolicy) -> None:
        codec, acodec = policy.obs_codec, policy.action_codec
        self.steps = steps
        self.vector = np.zeros((slots, steps, codec.vector_dim), np.float32)
        self.discrete = np.zeros((slots, steps, len(codec.discrete_sizes)), np.int64)
        self.images = [np.zeros((slots, steps, *s), np.uint8) for s in codec.image_shapes]
        self.starts = np.ones((slots, steps), bool)
        self.control = np.zeros((slots, steps), np.float32)
        self.valid = np.zeros((slots, steps), bool)
        self.from_policy = np.zeros((slots, steps), bool)
        self.disc = np.zeros((slots, steps, acodec.num_discrete), np.int64)
        self.cont = np.zeros((slots, steps, acodec.continuous_dim), np.float32)
        self.mask: np.ndarray | None = None
        self.num_logits = acodec.num_logits
        self.logp = np.zeros((slots, steps), np.float32)
        self.values = np.zeros((slots, steps), np.float32)
        self.version = np.zeros((slots, steps), np.int64)
        self.rewards = np.zeros((slots, steps), np.float32)
        self.terminated = np.zeros((slots, steps), bool)
        self.truncated = np.zeros((slots, steps), bool)

    def ensure_mask(self) -> np.ndarray:
        if self.mask is None:
            self.mask = np.ones((*self.valid.shape, self.num_logits), bool)
        return self.mask

    def clear(self, slot: int) -> None:
        """Blank a slot's row: unused positions are padding (not valid, own segment)."""
        self.starts[slot] = True
        self.valid[slot] = False
        self.from_policy[slot] = False
        self.rewards[slot] = 0.0
        self.terminated[slot] = False
        self.truncated[slot] = False
        self.logp[slot] = 0.0
        self.values[slot] = 0.0
        if self.mask is not None:
            self.mask[slot] = True

    def copy_out(self, slot: int, last_value: float) -> dict[str, Any]:
        row = {name: getattr(self, name)[slot].copy() for name in _ROW_FIELDS}
        row["images"] = [im[slot].copy() for im in self.images]
        row["mask"] = None if self.mask is None else self.mask[slot].copy()
        row["slot"] = slot
        row["last_value"] = float(last_value)
        return row


_ROW_FIELDS = (
    "vector",
    "discrete",
    "starts",
    "control",
    "valid",
    "from_policy",
    "disc",
    "cont",
    "logp",
    "values",
    "version",
    "rewards",
    "terminated",
    "truncated",
)


def _stack_rows(rows: list[dict[str, Any]], num_logits: int) -> Rollout:
    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([r[name] for r in rows]))

    mask = None
    if any(r["mask"] is not None for r in rows):
        full = np.ones((rows[0]["valid"].shape[0], num_logits), bool)
        mask = torch.from_numpy(np.stack([full if r["mask"] is None else r["mask"] for r in rows]))
    images = [
        torch.from_numpy(np.stack([r["images"][i] for r in rows]))
        for i in range(len(rows[0]["images"]))
    ]
    return Rollout(
        obs=ObsTensors(stack("vector"), stack("discrete"), images),
        starts=stack("starts"),
        control=stack("control"),
        valid=stack("valid"),
        from_policy=stack("from_policy"),
        disc=stack("disc"),
        cont=stack("cont"),
        mask=mask,
        logp=stack("logp"),
        values=stack("values"),
        rewards=np.stack([r["rewards"] for r in rows]),
        terminated=np.stack([r["terminated"] for r in rows]),
        truncated=np.stack([r["truncated"] for r in rows]),
        last_value=np.array([r["last_value"] for r in rows], np.float64),
    )


class Collector:
    """Drives an asynchronous vector env with the policy and fills rollouts; see the
    module doc.

    The trainer reads ``collect``, ``episodes``, ``total_episodes`` and
    ``recent_returns``, and for the last rollout ``policy_lag`` and ``last_slots`` (the
    slot of each row). :meth:`state_dict` holds everything but the envs, so a run whose
    envs can be saved too continues exactly.
    """

    def __init__(
        self,
        envs: Any,
        policy: GPTPolicy,
        normalizer: ObsNormalizer,
        reward_scaler: RewardScaler,
        *,
        rollout_steps: int,
        window: int,
        stride: int,
        control_random_prob: float,
        seed: int,
    ) -> None:
        self.envs = envs
        self.policy = policy
        self.normalizer = normalizer
        self.reward_scaler = reward_scaler
        self.num_envs = n = int(envs.num_envs)
        self.window = window
        self.stride = stride
        self.control_random_prob = control_random_prob
        self.obs_codec = policy.obs_codec
        self.action_codec = policy.action_codec
        #: Random streams that pick control values, random actions and policy samples.
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.episodes: deque[EpisodeRecord] = deque(maxlen=100)
        self.total_episodes = 0
        self.policy_lag = 0.0
        #: The slot each row of the last rollout came from.
        self.last_slots = np.zeros(0, np.int64)
        #: Rows each slot has completed so far (how the work spread over the hosts).
        self.rows_per_slot = np.zeros(n, np.int64)
        self.rows = _Rows(n, rollout_steps, policy)
        self.contexts = SlotContexts(policy, n, window)
        self.ready: deque[dict[str, Any]] = deque()
        self.pos = np.zeros(n, np.int64)  # tokens in the slot's current row
        self.pending = np.zeros(n, bool)  # the row's last token awaits its step's result
        self.next_final = np.zeros(n, bool)  # the slot's next token is a final observation
        self.next_start = np.ones(n, bool)  # the slot's next token begins an episode
        self.control = self._draw_control(n)
        self.ep_return = np.zeros(n, np.float64)
        self.ep_length = np.zeros(n, np.int64)
        self.version = 0
        self._started = False
        #: After the first answer, wait up to this long for the envs expected to answer
        #: within it: fewer, fuller forward passes; slower hosts are not waited for.
        self.max_wait = 0.005

    def _draw_control(self, n: int) -> np.ndarray:
        draw_random = self.rng.random(n) < self.control_random_prob
        return np.where(draw_random, self.rng.random(n), 1.0).astype(np.float32)

    def recent_returns(self, control: float | None = 1.0) -> list[float]:
        """Returns of recent finished episodes (only those played at ``control``)."""
        return [e.ret for e in self.episodes if control is None or e.control == control]

    # ---------------------------------------------------------------- state
    def reset(self, seed: int) -> None:
        """Start every env (its first observations arrive with the next ``collect``)."""
        self.envs.async_reset(seed=seed)
        self._started = True

    #: Attributes :meth:`state_dict` saves as they are (arrays are copied).
    _STATE = (
        "pos",
        "pending",
        "next_final",
        "next_start",
        "control",
        "ep_return",
        "ep_length",
        "version",
        "total_episodes",
        "rows_per_slot",
        "policy_lag",
        "last_slots",
        "_started",
    )

    def state_dict(self) -> dict[str, Any]:
        """Everything but the envs and the cached contexts (rebuilt from the rows)."""
        state = {name: copy.deepcopy(getattr(self, name)) for name in self._STATE}
        state["rows"] = {name: copy.deepcopy(value) for name, value in vars(self.rows).items()}
        state["ready"] = copy.deepcopy(list(self.ready))
        state["episodes"] = list(self.episodes)
        state["rng"] = self.rng.bit_generator.state
        state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._STATE:
            setattr(self, name, copy.deepcopy(state[name]))
        for name, value in state["rows"].items():
            setattr(self.rows, name, copy.deepcopy(value))
        self.ready = deque(copy.deepcopy(state["ready"]))
        self.episodes = deque(state["episodes"], maxlen=100)
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        self._refresh_contexts()

    # -------------------------------------------------------------- collect
    def collect(self, steps: int) -> Rollout:
        """The first ``num_envs`` rows of ``steps`` tokens that complete from now on
        (rows finished during the last update included)."""
        if not self._started:
            raise RuntimeError("call reset() before collect()")
        if steps != self.rows.steps:
            raise ValueError(f"this collector fills rows of {self.rows.steps} steps, not {steps}")
        if self.version > 0:
            self._refresh_contexts()  # the policy changed: cached keys/values are stale
        self.version += 1
        while len(self.ready) < self.num_envs:
            self.process(self.envs.recv(max_wait=self.max_wait))
        rows = [self.ready.popleft() for _ in range(self.num_envs)]
        self.last_slots = np.array([r["slot"] for r in rows], np.int64)
        np.add.at(self.rows_per_slot, self.last_slots, 1)
        lag = [self.version - r["version"][r["valid"]] for r in rows]
        lags = np.concatenate(lag) if lag else np.zeros(0)
        self.policy_lag = float(lags.mean()) if lags.size else 0.0
        return _stack_rows(rows, self.action_codec.num_logits)

    def collect_while(self, busy: Any, poll: float = 0.01) -> None:
        """Keep the envs stepping while ``busy()`` (an update runs), queueing the rows
        that complete for the next rollout; stops acting once a whole rollout waits."""
        while busy() and len(self.ready) < self.num_envs:
            self.process(self.envs.recv(timeout=poll, max_wait=self.max_wait))

    def process(self, batch: Any) -> None:
        """Take in one :class:`~agentgpt.core.step_batch.StepBatch`: record outcomes, act,
        send the actions."""
        ids = np.asarray(batch.env_ids, np.int64)
        if ids.size == 0:
            return
        cut = np.asarray(batch.cut, bool)
        for slot in ids[cut]:
            self._cut(int(slot))
        live = ~cut
        present = np.asarray(batch.present, bool) & live
        self._record_outcomes(ids[live], present[live], batch, live)
        new = ids[present]
        # Absent agents are sent a placeholder (index 0 / zeros), which the env source drops.
        count = int(live.sum())
        actions_disc = np.zeros((count, self.action_codec.num_discrete), np.int64)
        actions_cont = np.zeros((count, self.action_codec.continuous_dim), np.float32)
        if new.size:
            disc, cont = self._act(new, batch, present)
            where = np.flatnonzero(present[live])
            actions_disc[where] = disc
            actions_cont[where] = cont
        if live.any():
            self.envs.send(self.action_codec.to_env(actions_disc, actions_cont), ids[live])

    # ----------------------------------------------------------- outcomes
    def _record_outcomes(
        self, ids: np.ndarray, present: np.ndarray, batch: Any, live: np.ndarray
    ) -> None:
        """Write the rewards and flags of the steps the slots' last actions caused."""
        waiting = self.pending[ids]
        if not waiting.any():
            return
        slots = ids[waiting]
        t = self.pos[slots] - 1
        reward = np.asarray(batch.reward, np.float64)[live][waiting]
        term = np.asarray(batch.terminated, bool)[live][waiting]
        trunc = np.asarray(batch.truncated, bool)[live][waiting]
        vanished = ~present[waiting]
        active = self.rows.valid[slots, t]
        # A live agent that disappears without an end flag left the episode: it is over
        # for that agent (no later observation exists to bootstrap from).
        term = term | (vanished & active & ~trunc)
        done = (term | trunc) & active
        reward = np.where(active, reward, 0.0)
        full_reward = np.zeros(self.num_envs)
        full_done = np.zeros(self.num_envs, bool)
        full_active = np.zeros(self.num_envs, bool)
        full_reward[slots], full_done[slots], full_active[slots] = reward, done, active
        scaled = self.reward_scaler(full_reward, full_done, full_active)
        self.rows.rewards[slots, t] = scaled[slots]
        self.rows.terminated[slots, t] = term & active
        self.rows.truncated[slots, t] = trunc & active & ~term
        self.ep_return[slots] += reward
        self.ep_length[slots] += active
        for slot in slots[done]:
            self.episodes.append(
                EpisodeRecord(
                    float(self.ep_return[slot]),
                    int(self.ep_length[slot]),
                    float(self.control[slot]),
                )
            )
            self.total_episodes += 1
        self.ep_return[slots[done]] = 0.0
        self.ep_length[slots[done]] = 0
        self.pending[slots] = False
        # After an active step that ended, the next token is the final observation; after
        # a final token (or an agent that vanished), the next one starts an episode.
        self.next_final[slots] = done & ~vanished
        self.next_start[slots] = ~active | vanished

    def _cut(self, slot: int) -> None:
        """End the slot's trajectory at a fault: see the module doc."""
        rows = self.rows
        if self.pending[slot]:
            t = int(self.pos[slot]) - 1
            if rows.valid[slot, t]:
                rows.valid[slot, t] = False
                rows.from_policy[slot, t] = False
                before = t - 1
                if before >= 0 and rows.valid[slot, before] and not rows.terminated[slot, before]:
                    rows.truncated[slot, before] = True
        self._close_row(slot)
        self.pending[slot] = False
        self.next_final[slot] = False
        self.next_start[slot] = True
        self.ep_return[slot] = 0.0
        self.ep_length[slot] = 0
        self.contexts.clear(torch.tensor([slot]))

    def _close_row(self, slot: int) -> None:
        """Finish the slot's row early (padding stays invalid; no bootstrap, as its last
        token is never a valid one) and queue it if it has data."""
        if self.pos[slot] == 0:
            return
        if self.rows.valid[slot].any():
            self.ready.append(self.rows.copy_out(slot, 0.0))
        self.rows.clear(slot)
        self.pos[slot] = 0

    # ---------------------------------------------------------------- acting
    @torch.inference_mode()
    def _act(
        self, slots: np.ndarray, batch: Any, present: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Store the new observations as tokens, run one forward pass, sample actions."""
        rows, steps = self.rows, self.rows.steps
        full = slots[self.pos[slots] >= steps]
        finished = [self.rows.copy_out(int(s), 0.0) for s in full]
        for s in full:
            rows.clear(int(s))
            self.pos[s] = 0

        starts_new = self.next_start[slots]
        restarted = slots[starts_new]
        if restarted.size:
            self.control[restarted] = self._draw_control(restarted.size)
        n = slots.size
        observations = take(self.policy.observation_space, batch.obs, np.flatnonzero(present))
        parts = self.obs_codec.encode(observations, n)
        self.normalizer.update(parts.vector)
        vec = self.normalizer.normalize(parts.vector)
        imgs = [np.asarray(f, np.uint8) for f in parts.images]
        t = self.pos[slots]
        rows.vector[slots, t] = vec
        rows.discrete[slots, t] = parts.discrete
        for buf, frame in zip(rows.images, imgs, strict=True):
            buf[slots, t] = frame
        start_flags = starts_new | (t == 0)
        rows.starts[slots, t] = start_flags
        control = self.control[slots]
        rows.control[slots, t] = control
        final = self.next_final[slots]
        rows.valid[slots, t] = ~final
        rows.version[slots, t] = self.version
        mask = self.action_codec.mask_from_info(_select_info(batch.info, present), n)
        step_mask = None
        if mask is not None:
            step_mask = torch.from_numpy(mask)
            rows.ensure_mask()[slots, t] = mask

        self._prepare_contexts(slots)
        obs = ObsTensors(
            torch.from_numpy(vec)[:, None],
            torch.from_numpy(parts.discrete)[:, None],
            [torch.from_numpy(f)[:, None] for f in imgs],
        )
        out = self.contexts.extend(
            torch.from_numpy(slots),
            obs,
            torch.from_numpy(start_flags)[:, None],
            torch.from_numpy(control)[:, None],
            step_mask,
        )
        a_disc, a_cont = out.dist.sample(self.generator)
        logp = out.dist.log_prob(a_disc, a_cont)
        np_disc, np_cont = a_disc.numpy().copy(), a_cont.numpy().copy()
        use_random = self.action_codec.mix_random(self.rng, np_disc, np_cont, control, mask)
        rows.disc[slots, t] = np_disc
        rows.cont[slots, t] = np_cont
        rows.from_policy[slots, t] = ~use_random & ~final
        rows.logp[slots, t] = logp.numpy()
        values = out.values.numpy()
        rows.values[slots, t] = values

        # A finished row bootstraps from its slot's next token, valued from a one-token
        # context exactly as the first token of the next row is acted on.
        if finished:
            value_of = dict(zip(slots.tolist(), values.tolist(), strict=True))
            for slot, row in zip(full.tolist(), finished, strict=True):
                row["last_value"] = value_of[slot]
                self.ready.append(row)

        self.pos[slots] += 1
        self.pending[slots] = True
        self.next_final[slots] = False
        self.next_start[slots] = False
        return np_disc, np_cont

    def _prepare_contexts(self, slots: np.ndarray) -> None:
        """Start a new context for slots whose next token opens a training window."""
        t = self.pos[slots]  # where the new token is stored
        opening = (t % self.stride) == 0
        if opening.any():
            self._rebuild(slots[opening], t[opening])

    def _refresh_contexts(self) -> None:
        """Recompute every slot's cached context with the updated policy."""
        slots = np.flatnonzero(self.pos > 0)
        self.contexts.clear()
        if slots.size:
            nxt = self.pos[slots]
            keep = (nxt % self.stride != 0) & (nxt < self.rows.steps)
            if keep.any():
                self._rebuild(slots[keep], nxt[keep])

    def _rebuild(self, slots: np.ndarray, upto: np.ndarray) -> None:
        """Make each slot's context the row tokens ``[window_start(t), t)`` (``t = upto``)."""
        self.contexts.clear(torch.from_numpy(slots))
        k, stride = self.window, self.stride
        lo = np.array([window_start(int(t), k, stride) for t in upto], np.int64)
        length = upto - lo
        rows = self.rows
        for size in np.unique(length[length > 0]):
            group = length == size
            sl = slots[group]
            index = lo[group][:, None] + np.arange(int(size))
            rs = sl[:, None]
            obs = ObsTensors(
                torch.from_numpy(rows.vector[rs, index]),
                torch.from_numpy(rows.discrete[rs, index]),
                [torch.from_numpy(im[rs, index]) for im in rows.images],
            )
            self.contexts.extend(
                torch.from_numpy(sl),
                obs,
                torch.from_numpy(rows.starts[rs, index]),
                torch.from_numpy(rows.control[rs, index]),
            )


def _select_info(info: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """The rows of a vector-style info dict (only what action masks need)."""
    if "action_mask" not in info:
        return {}
    out = {"action_mask": [info["action_mask"][i] for i in np.flatnonzero(rows)]}
    if "_action_mask" in info:
        out["_action_mask"] = np.asarray(info["_action_mask"], bool)[rows]
    return out
