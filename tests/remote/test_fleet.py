"""Fleet: slot numbering, spaces, async send/recv against real env servers, sync API."""

from __future__ import annotations

import threading
import time

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from pettingzoo import ParallelEnv

import agentgpt.envs  # noqa: F401  (registers the agentgpt/ ids)
from agentgpt.envs import PETTINGZOO_ENVS
from agentgpt.envs.landmarks import parallel_env as landmarks_env
from agentgpt.remote.fleet import Fleet, FleetBatch
from agentgpt.remote.fleet.infos import agent_infos, merge_infos, scatter_info
from agentgpt.remote.testing import same_values

LANDMARKS = "agentgpt/Landmarks-v0"
FAST = {"step_timeout": 10.0, "connect_timeout": 2.0, "backoff_initial": 0.05, "backoff_max": 0.2}


# ------------------------------------------------------------------------ test envs


class GatedCartPole(gymnasium.Wrapper):
    """CartPole whose steps wait until ``gate`` is open: a host as slow as the test wants."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__(gymnasium.make("CartPole-v1"))
        self.gate = gate

    def step(self, action):
        self.gate.wait()
        return self.env.step(action)


class MaskedEnv(gymnasium.Env):
    """Counts its steps; reports which of 3 actions are allowed: action 1 on odd counts."""

    observation_space = spaces.Box(0.0, 100.0, (1,), np.float32)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), self._info()

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, False, self.t >= 6, self._info()

    def _obs(self):
        return np.array([self.t], dtype=np.float32)

    def _info(self):
        return {"action_mask": expected_mask(self.t)}


def expected_mask(t: float) -> np.ndarray:
    return np.array([1, int(t) % 2, 1], dtype=np.int8)


class MaskedAgents(ParallelEnv):
    """Two agents with per-agent action masks; ``b`` leaves after 2 steps, ``a`` after 4."""

    metadata = {"name": "masked_agents"}
    possible_agents = ["a", "b"]

    def __init__(self) -> None:
        self._obs_space = spaces.Box(0.0, 100.0, (2,), np.float32)
        self._act_space = spaces.Discrete(3)
        self.agents = []

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = list(self.possible_agents)
        return {a: self._obs(a) for a in self.agents}, {a: self._info(a) for a in self.agents}

    def step(self, actions):
        self.t += 1
        ends = {"a": 4, "b": 2}
        live = list(self.agents)
        obs = {a: self._obs(a) for a in live}
        term = {a: self.t >= ends[a] for a in live}
        self.agents = [a for a in live if not term[a]]
        return (
            obs,
            {a: 1.0 for a in live},
            term,
            {a: False for a in live},
            {a: self._info(a) for a in live},
        )

    def _obs(self, agent):
        return np.array([self.t, self.possible_agents.index(agent)], dtype=np.float32)

    def _info(self, agent):
        return {"action_mask": expected_mask(self.t + self.possible_agents.index(agent))}


class UnevenAgents(MaskedAgents):
    """Agents with different action spaces: no shared policy can act for both."""

    def action_space(self, agent):
        return spaces.Discrete(3 if agent == "a" else 4)


# ------------------------------------------------------------------------ helpers


def _drive(fleet: Fleet, rounds: int, actions_for) -> list[FleetBatch]:
    """Receive ``rounds`` batches, answering each with ``actions_for(batch)``."""
    batches = []
    for _ in range(rounds):
        batch = fleet.recv(timeout=10.0)
        assert batch.env_ids.size, "no news within 10 s"
        batches.append(batch)
        live = ~batch.cut
        if live.any():
            fleet.send(actions_for(batch)[live], batch.env_ids[live])
    return batches


def _zeros(batch: FleetBatch) -> np.ndarray:
    return np.zeros(batch.env_ids.size, dtype=np.int64)


# ------------------------------------------------------------------------ layout and spaces


def test_slots_are_numbered_by_host_then_env_and_spaces_are_batched(env_server):
    urls = [env_server(), env_server()]
    with Fleet.from_urls(urls, "CartPole-v1", envs_per_host=[2, 3], **FAST) as fleet:
        single = gymnasium.make("CartPole-v1")
        assert fleet.num_envs == 5
        assert not fleet.multi_agent and fleet.possible_agents is None
        assert fleet.single_observation_space == single.observation_space
        assert fleet.single_action_space == single.action_space
        assert fleet.observation_space == batch_space(single.observation_space, 5)
        assert fleet.action_space == batch_space(single.action_space, 5)
        assert fleet.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
        assert [h.url for h in fleet.hosts] == urls
        assert [h.slots for h in fleet.hosts] == [range(0, 2), range(2, 5)]
        assert all(h.up and h.times_down == 0 and h.incarnation for h in fleet.hosts)


def test_multi_agent_slots_are_envs_times_agents(env_server):
    urls = [env_server(register=PETTINGZOO_ENVS), env_server(register=PETTINGZOO_ENVS)]
    with Fleet.from_urls(urls, LANDMARKS, envs_per_host=[1, 2], **FAST) as fleet:
        assert fleet.multi_agent
        assert fleet.possible_agents == ["agent_0", "agent_1"]
        assert fleet.num_envs == 6
        assert [h.slots for h in fleet.hosts] == [range(0, 2), range(2, 6)]
        local = landmarks_env()
        assert fleet.single_observation_space == local.observation_space("agent_0")
        assert fleet.single_action_space == local.action_space("agent_0")


def test_hosts_serving_different_spaces_are_refused(env_server):
    cart = env_server(register={"Sim-v0": lambda: gymnasium.make("CartPole-v1")})
    car = env_server(register={"Sim-v0": lambda: gymnasium.make("MountainCar-v0")})
    with pytest.raises(ValueError, match="every host must serve the same env") as caught:
        Fleet.from_urls([cart, car], "Sim-v0", envs_per_host=1, **FAST)
    assert car in str(caught.value)


def test_agents_with_different_spaces_are_refused(env_server):
    url = env_server(register={"Uneven-v0": UnevenAgents})
    with pytest.raises(ValueError, match="share one observation space and one action space"):
        Fleet.from_urls([url], "Uneven-v0", envs_per_host=1, **FAST)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"envs_per_host": [1, 2, 3]}, "3 numbers for 2 hosts"),
        ({"envs_per_host": 0}, "at least 1"),
        ({"seed": -1}, "non-negative"),
        ({"step_timeout": 0}, "step_timeout must be positive"),
        ({"backoff_initial": 2.0, "backoff_max": 1.0}, "backoff_max"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Fleet.from_urls(["http://127.0.0.1:9", "http://127.0.0.1:10"], "CartPole-v1", **kwargs)


# ------------------------------------------------------------------------ async API


def _local_trajectories(num_envs: int, seed: int, actions: np.ndarray) -> list[list[tuple]]:
    local = gymnasium.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync")
    obs, _ = local.reset(seed=seed)
    rows = [[(obs[i], 0.0, False, False)] for i in range(num_envs)]
    for t in range(actions.shape[0]):
        obs, reward, terminated, truncated, _ = local.step(actions[t])
        for i in range(num_envs):
            rows[i].append((obs[i], reward[i], terminated[i], truncated[i]))
    local.close()
    return rows


def test_async_trajectories_equal_a_local_vector_env(env_server):
    """Any interleaving of partial sends and receives gives each slot exactly the
    trajectory of the same sub-env of one local vector env with the same seeds."""
    steps, seed = 60, 7
    rng = np.random.default_rng(0)
    table = rng.integers(0, 2, size=(steps, 5))
    expected = _local_trajectories(5, seed, table)

    urls = [env_server(), env_server()]
    with Fleet.from_urls(urls, "CartPole-v1", envs_per_host=[3, 2], seed=seed, **FAST) as fleet:
        fleet.async_reset()
        got: list[list[tuple]] = [[] for _ in range(5)]
        held: list[tuple[np.ndarray, np.ndarray]] = []
        while min(len(rows) for rows in got) < steps + 1:
            batch = fleet.recv(timeout=0.5)
            for ids, actions in held:  # actions held back over one recv
                fleet.send(actions, ids)
            held = []
            if batch.env_ids.size == 0:
                continue
            assert not batch.cut.any() and batch.present.all()
            assert batch.obs.dtype == np.float32 and batch.reward.dtype == np.float64
            for row, slot in enumerate(batch.env_ids):
                got[slot].append(
                    (batch.obs[row], batch.reward[row], batch.terminated[row], batch.truncated[row])
                )
            ids = batch.env_ids[[len(got[s]) <= steps for s in batch.env_ids]]
            if ids.size == 0:
                continue
            actions = np.array([table[len(got[s]) - 1, s] for s in ids])
            order = rng.permutation(ids.size)
            split = int(rng.integers(0, ids.size + 1))
            first, second = order[:split], order[split:]
            if first.size:
                fleet.send(actions[first], ids[first])
            if second.size:
                if rng.random() < 0.3:
                    held.append((ids[second], actions[second]))
                else:
                    fleet.send(actions[second], ids[second])
        episodes = 0
        for slot in range(5):
            assert len(got[slot]) == steps + 1
            for t, (mine, theirs) in enumerate(zip(got[slot], expected[slot], strict=True)):
                assert same_values(mine[0], theirs[0]), f"slot {slot} step {t} obs"
                assert mine[1:] == pytest.approx(theirs[1:]), f"slot {slot} step {t}"
            episodes += sum(bool(row[2] or row[3]) for row in got[slot])
        assert episodes >= 5  # autoreset (next-step) was exercised


def test_send_refuses_slots_that_are_not_awaiting_an_action(env_server):
    with Fleet.from_urls([env_server()], "CartPole-v1", envs_per_host=2, **FAST) as fleet:
        with pytest.raises(ValueError, match="not awaiting"):
            fleet.send(np.zeros(1, np.int64), np.array([0]))  # nothing received yet
        fleet.async_reset(seed=1)
        batch = fleet.recv(timeout=10.0)
        assert batch.env_ids.tolist() == [0, 1]
        with pytest.raises(ValueError, match="repeats"):
            fleet.send(np.zeros(2, np.int64), np.array([0, 0]))
        with pytest.raises(ValueError, match=r"\[0, 2\)"):
            fleet.send(np.zeros(1, np.int64), np.array([2]))
        with pytest.raises(ValueError, match="batch of 2"):
            fleet.send(np.zeros(3, np.int64), np.array([0, 1]))
        fleet.send(np.zeros(1, np.int64), np.array([1]))
        with pytest.raises(ValueError, match="not awaiting"):
            fleet.send(np.zeros(1, np.int64), np.array([1]))  # already sent
        # Half the vector env has its action: nothing steps until the other half does.
        assert fleet.recv(timeout=0.3).env_ids.size == 0
        fleet.send(np.zeros(1, np.int64), np.array([0]))
        batch = fleet.recv(timeout=10.0)
        assert batch.env_ids.tolist() == [0, 1] and batch.reward.tolist() == [1.0, 1.0]


def test_recv_returns_the_fast_host_while_the_slow_one_is_in_flight(env_server):
    gate = threading.Event()
    fast = env_server(register={"Sim-v0": lambda: gymnasium.make("CartPole-v1")})
    slow = env_server(register={"Sim-v0": lambda: GatedCartPole(gate)})
    try:
        with Fleet.from_urls([fast, slow], "Sim-v0", envs_per_host=2, seed=3, **FAST) as fleet:
            fleet.async_reset()
            seen = np.zeros(4, dtype=np.int64)
            while seen.min() == 0:  # both hosts' first observations
                batch = fleet.recv(timeout=10.0)
                seen[batch.env_ids] += 1
                fleet.send(_zeros(batch), batch.env_ids)
            # The slow host's step is in flight (blocked); the fast host keeps stepping.
            fast_rounds = 0
            for _ in range(25):
                batch = fleet.recv(timeout=10.0)
                assert set(batch.env_ids.tolist()) == {0, 1}
                fast_rounds += 1
                fleet.send(_zeros(batch), batch.env_ids)
            assert fast_rounds == 25
            gate.set()
            slow_rows = 0
            while slow_rows == 0:
                batch = fleet.recv(timeout=10.0)
                slow = np.isin(batch.env_ids, [2, 3])
                slow_rows += int(slow.sum())
                assert not batch.cut.any()
                fleet.send(_zeros(batch), batch.env_ids)
            assert slow_rows == 2
    finally:
        gate.set()


class SleepyCartPole(gymnasium.Wrapper):
    """CartPole whose steps each sleep ``delay`` seconds and resets ``reset_delay``: a
    host slower than its peers, or one that starts late."""

    def __init__(self, delay: float, reset_delay: float = 0.0) -> None:
        super().__init__(gymnasium.make("CartPole-v1"))
        self.delay = delay
        self.reset_delay = reset_delay

    def step(self, action):
        time.sleep(self.delay)
        return self.env.step(action)

    def reset(self, **kwargs):
        time.sleep(self.reset_delay)
        return self.env.reset(**kwargs)


def test_recv_max_wait_gathers_hosts_expected_soon_but_not_a_slow_one(env_server):
    """With ``max_wait`` one batch holds every host that answers within it, so the caller
    acts once for all of them; a host whose steps take far longer is not waited for."""
    quick = [env_server(register={"Sim-v0": lambda: SleepyCartPole(0.005)}) for _ in range(2)]
    slow = env_server(register={"Sim-v0": lambda: SleepyCartPole(0.4)})
    with Fleet.from_urls([*quick, slow], "Sim-v0", envs_per_host=1, seed=3, **FAST) as fleet:
        fleet.async_reset()
        pending = set(range(3))
        while pending:  # first observations of all three
            batch = fleet.recv(timeout=10.0)
            pending -= set(batch.env_ids.tolist())
            fleet.send(_zeros(batch), batch.env_ids)
        sizes = []
        for _ in range(12):
            batch = fleet.recv(timeout=10.0, max_wait=0.2)
            if 2 in batch.env_ids:
                fleet.send(_zeros(batch), batch.env_ids)
                continue  # the slow host's own answers come when they come
            sizes.append(sorted(batch.env_ids.tolist()))
            fleet.send(_zeros(batch), batch.env_ids)
    # Once the turnarounds are known, the two quick hosts always come together.
    assert sizes[-5:] == [[0, 1]] * 5


def test_the_first_observations_after_async_reset_come_together_in_slot_order(env_server):
    """Hosts whose resets end far apart still start in step: the first ``recv`` waits for
    every env ``async_reset`` reset and lists the slots in order, whoever answered first.
    With a shorter ``timeout`` it returns what came; the rest comes next."""
    late = env_server(register={"Sim-v0": lambda: SleepyCartPole(0.0, reset_delay=0.2)})
    quick = env_server(register={"Sim-v0": lambda: gymnasium.make("CartPole-v1")})
    with Fleet.from_urls([late, quick], "Sim-v0", envs_per_host=2, seed=3, **FAST) as fleet:
        fleet.async_reset(seed=3)
        batch = fleet.recv(timeout=10.0)  # no max_wait: the reset alone gathers them
        assert batch.env_ids.tolist() == [0, 1, 2, 3]
        assert batch.present.all() and not batch.cut.any()
        local = gymnasium.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
        first, _ = local.reset(seed=3)
        np.testing.assert_allclose(batch.obs, first)
        local.close()

        fleet.send(_zeros(batch), batch.env_ids)
        stepped: list[int] = []
        while len(stepped) < 4:  # afterwards, news as it comes, each batch in slot order
            steps = fleet.recv(timeout=10.0, max_wait=0.05)
            ids = steps.env_ids.tolist()
            assert ids == sorted(ids) and (steps.reward == 1.0).all()
            stepped += ids
        assert sorted(stepped) == [0, 1, 2, 3]

        fleet.async_reset(seed=5)
        early = fleet.recv(timeout=0.2)  # the late host needs 2 x 0.2 s
        assert early.env_ids.tolist() == [2, 3]
        rest = fleet.recv(timeout=10.0)
        assert rest.env_ids.tolist() == [0, 1]


# ------------------------------------------------------------------------ infos


def test_action_masks_reach_each_slot_from_vector_and_multi_agent_envs(env_server):
    urls = [env_server(register={"Masked-v0": MaskedEnv}) for _ in range(2)]
    with Fleet.from_urls(urls, "Masked-v0", envs_per_host=2, seed=0, **FAST) as fleet:
        fleet.async_reset()
        rows = 0
        for batch in _drive(fleet, 12, _zeros):
            assert batch.info["_action_mask"].all()
            for row in range(batch.env_ids.size):
                t = float(batch.obs[row, 0])
                assert batch.info["action_mask"][row].tolist() == expected_mask(t).tolist()
                rows += 1
        assert rows >= 24

    url = env_server(register={"MaskedAgents-v0": MaskedAgents})
    with Fleet.from_urls([url], "MaskedAgents-v0", envs_per_host=2, **FAST) as fleet:
        fleet.async_reset()
        absent_rows = 0
        for batch in _drive(fleet, 12, _zeros):
            mask_present = batch.info.get("_action_mask", np.zeros(batch.env_ids.size, bool))
            assert mask_present.tolist() == batch.present.tolist()
            for row in np.flatnonzero(batch.present):
                t, agent = batch.obs[row]
                assert batch.info["action_mask"][row].tolist() == expected_mask(t + agent).tolist()
            absent_rows += int((~batch.present).sum())
        assert absent_rows > 0


def test_infos_join_across_blocks_masking_what_a_block_lacks():
    a = {"x": np.array([1.5, 2.5]), "_x": np.array([True, True])}
    b = {"y": np.array([7]), "_y": np.array([True])}
    merged = merge_infos([(a, 2), (b, 1)])
    assert merged["x"].tolist() == [1.5, 2.5, 0.0] and merged["_x"].tolist() == [True, True, False]
    assert merged["y"].tolist() == [0, 0, 7] and merged["_y"].tolist() == [False, False, True]
    assert merge_infos([({}, 2), ({}, 3)]) == {}

    nested = merge_infos([({"f": {"k": np.array([1]), "_k": np.array([True])}}, 1), ({}, 1)])
    assert nested["f"]["k"].tolist() == [1, 0] and nested["f"]["_k"].tolist() == [True, False]

    ragged = merge_infos([({"m": np.ones((1, 2))}, 1), ({"m": np.ones((1, 3))}, 1)])
    assert ragged["m"].dtype == object and ragged["m"][1].tolist() == [1.0, 1.0, 1.0]

    per_agent = agent_infos([{"mask": np.array([1, 0]), "n": 3}, None, {"n": 4}], 3)
    assert per_agent["mask"].tolist() == [[1, 0], [0, 0], [0, 0]]
    assert per_agent["_mask"].tolist() == [True, False, False]
    assert per_agent["n"].tolist() == [3, 0, 4] and per_agent["_n"].tolist() == [True, False, True]

    full = scatter_info({"x": np.array([5, 6]), "_x": np.array([True, True])}, np.array([3, 0]), 4)
    assert full["x"].tolist() == [6, 0, 0, 5] and full["_x"].tolist() == [True, False, False, True]


# ------------------------------------------------------------------------ multi-agent


def _landmarks_reference(seed: int, actions: np.ndarray, steps: int) -> list[list[tuple]]:
    """Rows per agent of one Landmarks env stepped locally with next-step autoreset."""
    env = landmarks_env()
    agents = env.possible_agents
    obs, _ = env.reset(seed=seed)
    rows = [[(obs[a], 0.0, False, False, True)] for a in agents]
    for k in range(steps):
        if not env.agents:
            obs, _ = env.reset()
            reward, term, trunc = {}, {}, {}
        else:
            acts = {a: int(actions[k, i]) for i, a in enumerate(agents) if a in env.agents}
            obs, reward, term, trunc, _ = env.step(acts)
        for i, a in enumerate(agents):
            present = a in obs
            rows[i].append(
                (
                    obs[a] if present else np.zeros_like(rows[i][0][0]),
                    float(reward.get(a, 0.0)),
                    bool(term.get(a, False)),
                    bool(trunc.get(a, False)),
                    present,
                )
            )
    return rows


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_multi_agent_slots_follow_local_pettingzoo_episodes(env_server, encoding):
    """Agents are slots: absent ones come back present=False and get no action (the
    server would refuse one), and episodes continue through next-step resets."""
    steps, seed, envs = 70, 5, 2
    rng = np.random.default_rng(1)
    table = rng.integers(0, 5, size=(steps, envs * 2))
    urls = [env_server(register=PETTINGZOO_ENVS)]
    expected = [
        row
        for env in range(envs)
        for row in _landmarks_reference(seed + env, table[:, 2 * env : 2 * env + 2], steps)
    ]
    options = {**FAST, "encoding": encoding}
    with Fleet.from_urls(urls, LANDMARKS, envs_per_host=envs, seed=seed, **options) as fleet:
        fleet.async_reset()
        got: list[list[tuple]] = [[] for _ in range(fleet.num_envs)]
        while min(len(rows) for rows in got) < steps + 1:
            batch = fleet.recv(timeout=10.0)
            assert not batch.cut.any()
            for row, slot in enumerate(batch.env_ids):
                got[slot].append(
                    (
                        batch.obs[row],
                        batch.reward[row],
                        batch.terminated[row],
                        batch.truncated[row],
                        batch.present[row],
                    )
                )
            ids = batch.env_ids[[len(got[s]) <= steps for s in batch.env_ids]]
            if ids.size:
                fleet.send(np.array([table[len(got[s]) - 1, s] for s in ids]), ids)
    ends = absent = 0
    for slot in range(envs * 2):
        for t, (mine, theirs) in enumerate(zip(got[slot], expected[slot], strict=True)):
            assert np.array_equal(mine[0], theirs[0]), f"slot {slot} step {t} obs"
            assert mine[1] == pytest.approx(theirs[1]), f"slot {slot} step {t} reward"
            assert tuple(map(bool, mine[2:])) == theirs[2:], f"slot {slot} step {t} flags"
        ends += sum(bool(r[2] or r[3]) for r in got[slot])
        absent += sum(not r[4] for r in got[slot])
    assert ends >= 8 and absent >= 4


# ------------------------------------------------------------------------ sync API


@pytest.mark.parametrize(
    ("env_id", "encoding", "steps"),
    [
        ("CartPole-v1", "msgpack", 120),
        ("CartPole-v1", "json", 120),
        ("agentgpt/DictObs-v0", "msgpack", 40),  # Dict observations
        ("agentgpt/HybridTarget-v0", "msgpack", 40),  # Dict actions
        ("agentgpt/MultiDiscreteTarget-v0", "json", 40),  # MultiDiscrete actions, int infos
    ],
)
def test_sync_reset_and_step_equal_a_local_vector_env(env_server, env_id, encoding, steps):
    urls = [env_server(), env_server()]
    local = gymnasium.make_vec(env_id, num_envs=4, vectorization_mode="sync")
    options = {**FAST, "encoding": encoding}
    with Fleet.from_urls(urls, env_id, envs_per_host=2, **options) as fleet:
        assert same_values(fleet.reset(seed=21), local.reset(seed=21))
        actions = local.action_space
        actions.seed(4)
        for t in range(steps):
            action = actions.sample()
            mine, theirs = fleet.step(action), local.step(action)
            for name, a, b in zip(
                ["obs", "reward", "term", "trunc", "info"], mine, theirs, strict=True
            ):
                assert same_values(a, b), f"step {t} {name}: {a!r} != {b!r}"
    local.close()


def test_sync_api_needs_a_reset_and_a_closed_fleet_refuses_calls(env_server):
    fleet = Fleet.from_urls([env_server()], "CartPole-v1", envs_per_host=1, **FAST)
    with pytest.raises(RuntimeError, match="reset"):
        fleet.step(np.zeros(1, np.int64))
    fleet.close()
    fleet.close()  # idempotent
    for call in (lambda: fleet.recv(timeout=0), lambda: fleet.async_reset(), fleet.reset):
        with pytest.raises(RuntimeError, match="closed"):
            call()


def test_streams_are_driven_from_the_callers_thread_and_http_from_worker_threads(
    env_server, transport_kind
):
    """Once made, an env reached over the streaming session needs no thread of its own:
    the caller's thread sends its steps and reads its answers. Over HTTP each env keeps
    its worker thread. The answers are the same either way."""
    urls = [env_server(), env_server()]
    with Fleet.from_urls(urls, "CartPole-v1", envs_per_host=2, seed=5, **FAST) as fleet:
        local = gymnasium.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
        obs, _ = fleet.reset(seed=5)
        expected, _ = local.reset(seed=5)
        for step in range(30):
            actions = np.array([(step + i) % 2 for i in range(4)])
            obs, reward, terminated, truncated, _ = fleet.step(actions)
            expected, _, local_terminated, _, _ = local.step(actions)
            assert np.array_equal(obs, expected)
            assert np.array_equal(terminated, local_terminated)
        workers = [
            t for t in threading.enumerate() if t.name.startswith("fleet-env:") and t.is_alive()
        ]
        assert len(workers) == (0 if transport_kind == "stream" else 2)


def test_an_answer_left_unread_while_the_caller_is_away_does_not_slow_the_turnaround(
    env_server,
):
    """The turnaround that ``recv(max_wait=...)`` judges hosts by is how fast a host
    answers, not how long its answer waited while the caller trained: after a pause,
    both hosts are still expected soon and answer in one batch."""
    urls = [env_server(), env_server()]
    with Fleet.from_urls(urls, "CartPole-v1", envs_per_host=2, seed=1, **FAST) as fleet:
        fleet.async_reset()
        for _ in range(20):
            batch = fleet.recv(timeout=10.0, max_wait=0.05)
            fleet.send(_zeros(batch), batch.env_ids)
        for _ in range(3):
            time.sleep(0.3)  # an update between rollouts
            batch = fleet.recv(timeout=10.0, max_wait=0.05)
            fleet.send(_zeros(batch), batch.env_ids)
        assert all(s.turnaround is not None and s.turnaround < 0.1 for s in fleet._streams)
        for _ in range(10):
            batch = fleet.recv(timeout=10.0, max_wait=0.05)
            assert batch.env_ids.size == 4
            fleet.send(_zeros(batch), batch.env_ids)
