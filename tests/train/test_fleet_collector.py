"""The asynchronous collector's bookkeeping, driven step by step with fleet batches.

These tests feed :class:`FleetBatch` values (the data a real Fleet's ``recv`` returns)
straight into ``Collector.process`` so each fault lands at an exact position. The
collector's only other contact with the fleet is ``send``, which a small recorder below
captures; the end-to-end behaviour with real servers and real faults is covered by
tests/test_fleet_training.py.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from agentgpt.agent.normalization import ObsNormalizer
from agentgpt.policy.model import GPTPolicy
from agentgpt.remote.fleet import FleetBatch
from agentgpt.train.collector import Collector
from agentgpt.train.ppo import compute_gae
from agentgpt.train.reward_scaling import RewardScaler

OBS_SPACE = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACT_SPACE = gymnasium.spaces.Discrete(2)


class SendRecorder:
    """Records what the collector sends; stands in for the fleet's outgoing side only."""

    num_envs = 2
    single_observation_space = OBS_SPACE
    single_action_space = ACT_SPACE

    def __init__(self) -> None:
        self.sent: list[tuple[np.ndarray, np.ndarray]] = []

    def async_reset(self, seed: int | None = None) -> None:
        self.seed = seed

    def send(self, actions: np.ndarray, env_ids: np.ndarray) -> None:
        self.sent.append((np.asarray(actions).copy(), np.asarray(env_ids).copy()))


def make_collector(steps: int = 4) -> tuple[Collector, SendRecorder]:
    torch.manual_seed(0)
    policy = GPTPolicy(
        OBS_SPACE,
        ACT_SPACE,
        num_layers=1,
        d_model=16,
        num_heads=2,
        max_input_states=2,
        num_input_states=2,
    ).eval()
    fleet = SendRecorder()
    window = min(4, steps)
    collector = Collector(
        fleet,
        policy,
        ObsNormalizer(3, enabled=False),
        RewardScaler(2, 0.99, enabled=False),
        rollout_steps=steps,
        window=window,
        stride=window,
        control_random_prob=0.0,
        seed=0,
    )
    collector.reset(seed=0)
    return collector, fleet


def batch(
    ids: list[int],
    *,
    obs: float | list[float] = 0.1,
    reward: float = 1.0,
    terminated: list[bool] | None = None,
    truncated: list[bool] | None = None,
    present: list[bool] | None = None,
    cut: list[bool] | None = None,
) -> FleetBatch:
    n = len(ids)
    values = np.broadcast_to(np.asarray(obs, np.float32), (n,))
    return FleetBatch(
        env_ids=np.asarray(ids, np.int64),
        present=np.asarray(present if present is not None else [True] * n),
        obs=np.repeat(values[:, None], 3, axis=1).astype(np.float32),
        reward=np.full(n, reward),
        terminated=np.asarray(terminated if terminated is not None else [False] * n),
        truncated=np.asarray(truncated if truncated is not None else [False] * n),
        cut=np.asarray(cut if cut is not None else [False] * n),
        info={},
    )


def test_a_cut_trajectory_ends_its_row_and_the_next_data_starts_fresh() -> None:
    collector, fleet = make_collector()
    collector.process(batch([0, 1], obs=0.1))  # first observations
    collector.process(batch([0, 1], obs=0.2, reward=1.0))  # one step each
    collector.process(batch([0], cut=[True], present=[False]))  # slot 0's host fails
    assert fleet.sent[-1][1].tolist() == [0, 1]  # nothing is sent for a cut slot
    assert len(fleet.sent) == 2

    assert len(collector.ready) == 1
    row = collector.ready[0]
    assert row["slot"] == 0
    # token 0 stepped (reward 1) into token 1, whose action was never answered: token 1
    # becomes a final observation and token 0's step is truncated (bootstrapped from it).
    assert row["valid"].tolist() == [True, False, False, False]
    assert row["truncated"].tolist() == [True, False, False, False]
    assert row["terminated"].tolist() == [False] * 4
    assert row["rewards"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert not row["from_policy"][1:].any()

    # The slot comes back (env made again): a new episode in a new row.
    collector.process(batch([0], obs=0.9))
    assert collector.pos[0] == 1
    assert bool(collector.rows.starts[0, 0]) and bool(collector.rows.valid[0, 0])
    assert collector.contexts.lengths[0] == 1  # the context holds only the new token
    # Slot 1 never noticed.
    assert collector.pos[1] == 2 and collector.pending[1]

    # GAE on the cut row: the truncated step bootstraps from the final token's value,
    # and nothing flows across the cut.
    adv, _ = compute_gae(
        row["rewards"][None].astype(np.float64),
        row["values"][None].astype(np.float64),
        row["valid"][None],
        row["terminated"][None],
        row["truncated"][None],
        np.array([123.0]),
        0.99,
        0.95,
    )
    values = row["values"]
    assert adv[0, 0] == pytest.approx(1.0 + 0.99 * values[1] - values[0], abs=1e-6)
    assert adv[0, 1:].tolist() == [0.0, 0.0, 0.0]


def test_full_rows_bootstrap_from_the_next_token_and_episodes_end_in_final_tokens() -> None:
    collector, fleet = make_collector()
    collector.process(batch([1], obs=0.1))
    collector.process(batch([1], obs=0.2))
    collector.process(batch([1], obs=0.3, terminated=[True]))  # the episode ends
    row_pos = int(collector.pos[1])
    assert row_pos == 3
    assert not bool(collector.rows.valid[1, 2])  # token 2 is the final observation
    assert collector.rows.terminated[1, 1]
    collector.process(batch([1], obs=-0.5, reward=7.0))  # NEXT_STEP reset: reward dropped
    assert collector.rows.rewards[1, 2] == 0.0
    assert bool(collector.rows.starts[1, 3]) and bool(collector.rows.valid[1, 3])
    assert collector.total_episodes == 1
    assert collector.episodes[-1].ret == 2.0 and collector.episodes[-1].length == 2

    assert not collector.ready
    collector.process(batch([1], obs=-0.4))  # a 5th token: row 0 is full and completes
    assert len(collector.ready) == 1
    row = collector.ready[0]
    assert row["valid"].tolist() == [True, True, False, True]
    # Its bootstrap is the value of the next row's first token (a one-token context).
    assert row["last_value"] == pytest.approx(float(collector.rows.values[1, 0]))
    assert bool(collector.rows.starts[1, 0])
    assert collector.contexts.lengths[1] == 1


def test_absent_agents_add_no_tokens_but_are_sent_an_action() -> None:
    collector, fleet = make_collector()
    collector.process(batch([0, 1], present=[True, False]))
    assert collector.pos.tolist() == [1, 0]
    assert fleet.sent[-1][1].tolist() == [0, 1]
    # Agent 0 finishes: its final observation, then it is absent until the reset.
    collector.process(batch([0, 1], terminated=[True, False], present=[True, False]))
    collector.process(batch([0, 1], present=[False, False]))
    assert collector.pos.tolist() == [2, 0]
    assert not collector.pending.any()
    collector.process(batch([0, 1], reward=0.0))  # the next episode: both agents
    assert collector.pos.tolist() == [3, 1]
    assert bool(collector.rows.starts[0, 2]) and bool(collector.rows.starts[1, 0])


def test_collect_returns_the_first_completed_rows() -> None:
    collector, fleet = make_collector(steps=2)
    incoming = [batch([0, 1])] + [batch([0])] * 4 + [batch([1])] * 2

    def recv(timeout: float | None = None, max_wait: float = 0.0) -> FleetBatch:
        return incoming.pop(0)

    fleet.recv = recv
    rollout = collector.collect(2)
    # Slot 0 answered faster and completed both rows the update needs.
    assert collector.last_slots.tolist() == [0, 0]
    assert rollout.valid.shape == (2, 2)
    assert incoming  # slot 1's later answers were not needed
