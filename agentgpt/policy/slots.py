"""Per-env cached contexts, so one forward pass acts for any subset of envs.

A collector that drives remote envs asynchronously holds, at any moment, the newest
observations of only some envs, and each of those envs sits at its own position in its
own context, so a cache that is one block whose rows all have the same length cannot
serve it. :class:`SlotContexts` keeps one fixed-size slot of keys/values per env instead
(when every slot is listed at one length, as local envs that answer together are, it
reads and writes that block in place, whatever order the slots are listed in). An :meth:`SlotContexts.extend` gathers the slots
it is given, computes only the new tokens against them (positions past a slot's length,
and tokens of earlier episodes, are masked out; relative distances are per row), and
scatters the new keys/values back. The output at each slot's newest token is the one
:meth:`GPTPolicy.forward` gives on that slot's whole context.

Cached keys/values depend on the weights: after a policy update, :meth:`clear` every
slot (or rebuild the contexts) before acting again. Dropout applies as in any forward
pass, so act with the policy in eval mode.
"""

from __future__ import annotations

import torch

from agentgpt.policy.encoders import ObsTensors
from agentgpt.policy.model import GPTPolicy, PolicyOutput


class SlotContexts:
    """Per-env key/value caches so one forward pass can act for any subset of envs,
    each at its own context length."""

    def __init__(self, policy: GPTPolicy, num_slots: int, capacity: int) -> None:
        if num_slots < 1:
            raise ValueError(f"num_slots must be at least 1, got {num_slots}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.policy = policy
        self.num_slots = int(num_slots)
        self.capacity = int(capacity)
        d_model, heads = int(policy.config["d_model"]), int(policy.config["num_heads"])
        reference = policy.control.weight
        device = reference.device
        #: Keys (index 0) and values (index 1) of every layer, per slot and position.
        #: Positions are second to last so a layer's slice is ``[B, heads, T, head_dim]``
        #: with contiguous rows, the layout attention concatenates new keys onto.
        self._kv = torch.zeros(
            self.num_slots,
            len(policy.blocks),
            2,
            heads,
            self.capacity,
            d_model // heads,
            dtype=reference.dtype,
            device=device,
        )
        #: Position where the episode segment of each slot's newest token begins: the
        #: same rule as ``segment_mask``, kept as one number since segments only grow.
        self._start = torch.zeros(self.num_slots, dtype=torch.long, device=device)
        self._steps = torch.arange(self.capacity, device=device)
        self._all = torch.arange(self.num_slots, device=device)
        self.lengths: torch.Tensor = torch.zeros(self.num_slots, dtype=torch.long, device=device)

    @torch.inference_mode()
    def clear(self, slots: torch.Tensor | None = None) -> None:
        """Empty the contexts of ``slots`` (int64 [B]); all slots when None.

        Only lengths change: whatever a slot held is out of reach of its next tokens.
        """
        if slots is None:
            self.lengths.zero_()
            return
        self._check_slots(slots)
        self.lengths[slots.to(self.lengths.device, torch.long)] = 0

    @torch.inference_mode()
    def extend(
        self,
        slots: torch.Tensor,
        obs: ObsTensors,
        starts: torch.Tensor,
        control: torch.Tensor,
        action_mask: torch.Tensor | None = None,
    ) -> PolicyOutput:
        """Append ``n`` tokens to each listed slot and read out each slot's newest one.

        ``slots``: distinct int64 ``[B]``; ``obs``: ``[B, n, ...]``; ``starts``: bool
        ``[B, n]``, True where an episode begins (a slot whose context is empty begins
        one at its first new token anyway); ``control``: ``[B, n]``; ``action_mask``:
        optional bool ``[B, num_logits]`` for the newest token. Returns the action
        distribution and values ``[B]`` at each slot's last new token. Raises
        ValueError, leaving every slot as it was, when a slot would exceed
        ``capacity``, on duplicate or out-of-range slots, and on shape mismatches.
        """
        batch, steps = self._check_extend(slots, obs, starts, control, action_mask)
        slots = slots.to(self._kv.device, torch.long)
        every = batch == self.num_slots
        if every and not bool((slots == self._all).all()):
            # Every slot, out of order (a fleet lists them as its hosts answer): putting
            # the few new tokens in slot order is far cheaper than gathering and
            # scattering every slot's cached keys and values.
            order = torch.argsort(slots)
            out = self._extend(
                self._all,
                _rows(obs, order),
                starts.index_select(0, order),
                control.index_select(0, order),
                None if action_mask is None else action_mask.index_select(0, order),
                every=True,
            )
            back = torch.empty_like(order)
            back[order] = self._all
            return PolicyOutput(out.dist.select(back), out.values.index_select(0, back))
        return self._extend(slots, obs, starts, control, action_mask, every=every)

    def _extend(
        self,
        slots: torch.Tensor,
        obs: ObsTensors,
        starts: torch.Tensor,
        control: torch.Tensor,
        action_mask: torch.Tensor | None,
        *,
        every: bool,
    ) -> PolicyOutput:
        """:meth:`extend` on checked inputs (``slots`` int64 on the cache's device);
        ``every``: the slots are all of them, in order."""
        steps = int(starts.shape[1])
        lengths = self.lengths.index_select(0, slots)
        cached = int(lengths.max())  # keys to gather: the longest listed context
        if cached + steps > self.capacity:
            raise ValueError(
                f"extending slots by {steps} tokens exceeds capacity {self.capacity} "
                f"(longest listed context holds {cached})"
            )
        positions = lengths.unsqueeze(1) + self._steps[:steps]  # [B, n]: the new tokens

        # Where the episode segment of each new token begins: the slot's current one
        # (position 0 for an empty slot), or the latest start among the new tokens.
        current = self._start.index_select(0, slots).masked_fill(lengths == 0, 0)
        segment = torch.where(starts, positions, current.unsqueeze(1)).cummax(1).values

        # Keys: the first ``cached`` positions of every listed slot, then the new tokens.
        # A query sees the keys from its segment's start up to itself; cached positions
        # at or past a slot's length are moved out of reach (to ``capacity``).
        old = self._steps[:cached]
        old = torch.where(old < lengths.unsqueeze(1), old, self.capacity)
        keys = torch.cat([old, positions], dim=1).unsqueeze(1)
        allowed = (keys >= segment.unsqueeze(2)) & (keys <= positions.unsqueeze(2))
        distance = (positions.unsqueeze(2) - keys).clamp(0, self.policy.max_input_states - 1)

        # Every slot in order at one length (lockstep collection): the cache is read and
        # written in place of gathering and scattering rows.
        uniform = every and int(lengths.min()) == cached
        # [B, layers, 2, heads, cached, hd]; index_select is far cheaper than indexing.
        cache = self._kv[..., :cached, :]
        gathered = cache if every else cache.index_select(0, slots)
        past = [(gathered[:, i, 0], gathered[:, i, 1]) for i in range(gathered.shape[1])]
        out, presents = self.policy.forward_with_past(
            obs, control, allowed, distance, past, action_mask
        )

        if presents:
            layers = len(presents)
            fresh = torch.stack([t[:, :, cached:] for kv in presents for t in kv])
            # [layers * 2, B, heads, n, hd] -> [B, n, layers, 2, heads, hd]: the shape
            # advanced indexing by (slot, position) gives.
            fresh = fresh.unflatten(0, (layers, 2))
            if uniform:
                self._kv[..., cached : cached + steps, :] = fresh.permute(2, 0, 1, 3, 4, 5)
            else:
                self._kv[slots.unsqueeze(1), :, :, :, positions] = fresh.permute(2, 4, 0, 1, 3, 5)
        self._start[slots] = segment[:, -1]
        self.lengths[slots] = lengths + steps
        return out

    # ------------------------------------------------------------- checks
    def _check_slots(self, slots: torch.Tensor) -> None:
        if slots.dim() != 1 or slots.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"slots must be a 1-D integer tensor, got {slots.dtype} {tuple(slots.shape)}"
            )
        if slots.numel() and (int(slots.min()) < 0 or int(slots.max()) >= self.num_slots):
            raise ValueError(f"slots must lie in [0, {self.num_slots}), got {slots.tolist()}")

    def _check_extend(
        self,
        slots: torch.Tensor,
        obs: ObsTensors,
        starts: torch.Tensor,
        control: torch.Tensor,
        action_mask: torch.Tensor | None,
    ) -> tuple[int, int]:
        """Validate one :meth:`extend` call; returns ``(B, n)``."""
        self._check_slots(slots)
        batch = int(slots.shape[0])
        if batch == 0:
            raise ValueError("extend needs at least one slot")
        if int(torch.bincount(slots.long(), minlength=self.num_slots).max()) > 1:
            raise ValueError(f"slots must be distinct, got {slots.tolist()}")
        if starts.dim() != 2 or starts.shape[0] != batch or starts.shape[1] < 1:
            raise ValueError(f"starts must be [{batch}, n] with n >= 1, got {tuple(starts.shape)}")
        if starts.dtype != torch.bool:
            raise ValueError(f"starts must be bool, got {starts.dtype}")
        steps = int(starts.shape[1])
        lead = (batch, steps)
        if tuple(control.shape) != lead:
            raise ValueError(f"control must be {list(lead)}, got {tuple(control.shape)}")
        codec = self.policy.obs_codec
        expected = {
            "vector": (obs.vector, (*lead, codec.vector_dim)),
            "discrete": (obs.discrete, (*lead, len(codec.discrete_sizes))),
        }
        if len(obs.images) != len(codec.image_shapes):
            raise ValueError(
                f"expected {len(codec.image_shapes)} image tensors, got {len(obs.images)}"
            )
        for i, (frames, shape) in enumerate(zip(obs.images, codec.image_shapes, strict=True)):
            expected[f"images[{i}]"] = (frames, (*lead, *shape))
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"obs.{name} must be {list(shape)}, got {tuple(tensor.shape)}")
        if action_mask is not None:
            logits = self.policy.action_codec.num_logits
            if tuple(action_mask.shape) != (batch, logits):
                raise ValueError(
                    f"action_mask must be [{batch}, {logits}], got {tuple(action_mask.shape)}"
                )
        return batch, steps


def _rows(obs: ObsTensors, index: torch.Tensor) -> ObsTensors:
    """The rows ``index`` of every part of ``obs``."""
    return ObsTensors(
        obs.vector.index_select(0, index),
        obs.discrete.index_select(0, index),
        [frames.index_select(0, index) for frames in obs.images],
    )
