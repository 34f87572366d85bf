"""A stand-in for a Unity player built with ML-Agents, for the tests.

No Unity binary runs in CI, so this small program plays the part of one: it speaks the
ML-Agents communicator protocol exactly as a Unity player does. Python
(``mlagents_envs.environment.UnityEnvironment``) is the gRPC server, listening on
``base_port + worker_id``; the player is the client. It connects to the port given by
``--mlagents-port`` (the argument ``UnityEnvironment`` launches builds with), sends its
academy description, and then answers every reset and step command with the agents'
observations, built from the package's own protobuf messages
(``mlagents_envs.communicator_objects``):

1. ``Exchange`` with the initialization output (name, communication version 1.5.0,
   capabilities); the answer carries Python's initialization input (the seed).
2. ``Exchange`` with an empty message; the answer is Python's first command.
3. For each command (``RESET`` or ``STEP`` with the agents' actions, plus side-channel
   bytes) ``Exchange`` the agents' ``AgentInfoProto`` lists per behaviour; the answer is
   the next command. A behaviour's ``BrainParametersProto`` goes with the first output
   that holds its agents. An answer with status 400 means Python closed the env.

Scenes (``--scene``):

``mixed``
    ``Walker?team=0``: discrete actions (one branch of 3), one vector sensor of 4. Agents
    0, 1 and 2 start at each reset; their episodes last 4, 6 and 9 steps. Agent 0 ends
    by reaching its goal (terminated) and asks for its next decision in the same step;
    agent 1 ends at its step limit (interrupted) and also asks again at once; agent 2
    ends (terminated) and asks again one step later. Agent 3 joins 3 steps after a reset
    (episodes of 5 steps). Action 2 is masked for agent 0. Observation: ``[step / 10,
    index, last action, 1]``; reward per step ``0.1`` when the action equals ``step % 3``,
    ``1`` at a terminal step.

    ``Glider?team=0``: hybrid actions (2 continuous, discrete branches of 2 and 3), a
    vector sensor of 3 and an 8x8 RGB camera sensor (PNG-compressed, as Unity sends camera
    frames). Agents 10 and 11, in group 1, episodes of ``glider_episode_length`` steps (an
    environment parameter, 5 by default) ending with a group reward of 0.5. Vector
    observation: the last action ``[c0, c1, 10 * d0 + d1]``; the frame's red channel is
    ``20 * step`` (mod 256), its green channel ``100 * index``.

``coop``
    Two behaviours with the same specs, ``Red?team=0`` (agents 0, 1) and ``Blue?team=0``
    (agents 2, 3); red agent ``i`` works with blue agent ``i``. Each step every agent sees
    a cue (one-hot of 3, drawn at random) and a constant 1, and picks one of 3 actions.
    Each agent earns ``0.5`` for picking its own cue plus ``0.5`` when its partner picked
    the partner's cue. Episodes last 8 steps for everyone and restart at once. A random
    policy earns ``1/3`` per step (2.67 per episode), a perfect team 1 (8 per episode).

``--record PATH`` writes the side-channel settings received so far (engine configuration
and environment parameters) as JSON after each command that carried some, as a player's
log would show them. ``--die-after N`` makes the process exit abruptly after N steps.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import sys
import time
import uuid

import grpc
import numpy as np
from mlagents_envs.communicator_objects.agent_info_pb2 import AgentInfoProto
from mlagents_envs.communicator_objects.brain_parameters_pb2 import (
    ActionSpecProto,
    BrainParametersProto,
)
from mlagents_envs.communicator_objects.capabilities_pb2 import UnityRLCapabilitiesProto
from mlagents_envs.communicator_objects.command_pb2 import QUIT, RESET
from mlagents_envs.communicator_objects.observation_pb2 import (
    NONE,
    PNG,
    ObservationProto,
)
from mlagents_envs.communicator_objects.unity_message_pb2 import UnityMessageProto
from mlagents_envs.communicator_objects.unity_output_pb2 import UnityOutputProto
from mlagents_envs.communicator_objects.unity_rl_initialization_output_pb2 import (
    UnityRLInitializationOutputProto,
)
from mlagents_envs.communicator_objects.unity_to_external_pb2_grpc import (
    UnityToExternalProtoStub,
)
from PIL import Image

ENGINE_CHANNEL = uuid.UUID("e951342c-4f7e-11ea-b238-784f4387d1f7")
PARAMETERS_CHANNEL = uuid.UUID("534c891e-810f-11ea-a9d0-822485860400")
ENGINE_FIELDS = {
    1: "quality_level",
    2: "time_scale",
    3: "target_frame_rate",
    4: "capture_frame_rate",
}


# ------------------------------------------------------------------------------ messages


def vector_obs(values, name: str = "VectorSensor") -> ObservationProto:
    obs = ObservationProto(shape=[len(values)], compression_type=NONE, name=name)
    obs.float_data.data.extend(float(v) for v in values)
    return obs


def png_obs(frame: np.ndarray, name: str = "CameraSensor") -> ObservationProto:
    buffer = io.BytesIO()
    Image.fromarray(frame.astype(np.uint8), "RGB").save(buffer, format="PNG")
    return ObservationProto(
        shape=list(frame.shape), compression_type=PNG, compressed_data=buffer.getvalue(), name=name
    )


def brain(name: str, continuous: int, branches: list[int]) -> BrainParametersProto:
    spec = ActionSpecProto(
        num_continuous_actions=continuous,
        num_discrete_actions=len(branches),
        discrete_branch_sizes=branches,
    )
    return BrainParametersProto(brain_name=name, is_training=True, action_spec=spec)


class Agent:
    """One agent's pending message for the next output."""

    def __init__(self, agent_id: int, index: int) -> None:
        self.id = agent_id
        self.index = index
        self.t = 0
        self.reward = 0.0
        self.last = None  # the last action received

    def info(
        self, observations, *, done=False, interrupted=False, mask=None, group=0, group_reward=0.0
    ):
        info = AgentInfoProto(
            reward=self.reward,
            done=done,
            max_step_reached=interrupted,
            id=self.id,
            group_id=group,
            group_reward=group_reward,
        )
        info.observations.extend(observations)
        if mask is not None:
            info.action_mask.extend(mask)
        self.reward = 0.0
        return info


# -------------------------------------------------------------------------------- scenes


class MixedScene:
    """Two behaviours: discrete Walker, hybrid Glider (see the module docstring)."""

    WALKER, GLIDER = "Walker?team=0", "Glider?team=0"
    BRAINS = {WALKER: (0, [3]), GLIDER: (2, [2, 3])}
    LENGTHS = {0: 4, 1: 6, 2: 9, 3: 5}

    def __init__(self, seed: int, parameters: dict) -> None:
        self.parameters = parameters

    def reset(self):
        self.step_count = 0
        self.walkers = {i: Agent(i, i) for i in range(3)}
        self.gliders = {10 + i: Agent(10 + i, i) for i in range(2)}
        self.waiting = {}  # agent 2 asks again one step after its end
        return self._decisions([], [])

    def step(self, actions):
        walker_actions = actions.get(self.WALKER, [])
        glider_actions = actions.get(self.GLIDER, [])
        for agent, action in zip(self._asking_walkers, walker_actions, strict=True):
            choice = int(action.discrete_actions[0])
            agent.last = choice
            agent.reward += 0.1 if choice == agent.t % 3 else 0.0
            agent.t += 1
        for agent, action in zip(self._asking_gliders, glider_actions, strict=True):
            agent.last = (list(action.continuous_actions), list(action.discrete_actions))
            agent.reward -= 0.1 * abs(action.continuous_actions[0])
            agent.t += 1
        self.step_count += 1
        walker_ends, glider_ends = [], []
        for agent_id, agent in list(self.walkers.items()):
            if agent.t >= self.LENGTHS[agent_id]:
                agent.reward += 1.0
                walker_ends.append((agent, agent_id == 1))
                fresh = Agent(agent_id, agent.index)
                if agent_id == 2:
                    del self.walkers[agent_id]
                    self.waiting[agent_id] = (fresh, self.step_count + 1)
                else:
                    self.walkers[agent_id] = fresh
        for agent_id, (agent, due) in list(self.waiting.items()):
            if self.step_count >= due:
                self.walkers[agent_id] = agent
                del self.waiting[agent_id]
        if self.step_count == 3 and 3 not in self.walkers:
            self.walkers[3] = Agent(3, 3)
        length = int(self.parameters.get("glider_episode_length", 5))
        for agent_id, agent in list(self.gliders.items()):
            if agent.t >= length:
                glider_ends.append(agent)
                self.gliders[agent_id] = Agent(agent_id, agent.index)
        return self._decisions(walker_ends, glider_ends)

    def _walker_obs(self, agent):
        last = -1 if agent.last is None else agent.last
        return [vector_obs([agent.t / 10.0, agent.index, last, 1.0])]

    def _glider_obs(self, agent):
        if agent.last is None:
            values = [0.0, 0.0, -1.0]
        else:
            cont, disc = agent.last
            values = [cont[0], cont[1], 10 * disc[0] + disc[1]]
        frame = np.zeros((8, 8, 3), dtype=np.uint8)
        frame[..., 0] = (20 * agent.t) % 256
        frame[..., 1] = 100 * agent.index
        return [vector_obs(values), png_obs(frame)]

    def _decisions(self, walker_ends, glider_ends):
        walkers, gliders = [], []
        for agent, interrupted in walker_ends:
            walkers.append(agent.info(self._walker_obs(agent), done=True, interrupted=interrupted))
        for agent in glider_ends:
            gliders.append(
                agent.info(self._glider_obs(agent), done=True, group=1, group_reward=0.5)
            )
        self._asking_walkers = list(self.walkers.values())
        self._asking_gliders = list(self.gliders.values())
        for agent in self._asking_walkers:
            mask = [False, False, True] if agent.id == 0 else None
            walkers.append(agent.info(self._walker_obs(agent), mask=mask))
        for agent in self._asking_gliders:
            gliders.append(agent.info(self._glider_obs(agent), group=1))
        return {self.WALKER: walkers, self.GLIDER: gliders}


class CoopScene:
    """Red and Blue agents paired on a cue-matching task (see the module docstring)."""

    RED, BLUE = "Red?team=0", "Blue?team=0"
    BRAINS = {RED: (0, [3]), BLUE: (0, [3])}
    LENGTH = 8

    def __init__(self, seed: int, parameters: dict) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self):
        self.agents = {self.RED: [Agent(0, 0), Agent(1, 1)], self.BLUE: [Agent(2, 0), Agent(3, 1)]}
        self._draw()
        return self._decisions(ended=False)

    def _draw(self):
        self.cues = {
            name: [int(self.rng.integers(3)) for _ in agents]
            for name, agents in self.agents.items()
        }

    def step(self, actions):
        hits = {}
        for name, agents in self.agents.items():
            chosen = actions.get(name, [])
            hits[name] = [
                bool(len(chosen) > i and int(chosen[i].discrete_actions[0]) == self.cues[name][i])
                for i in range(len(agents))
            ]
        for name, agents in self.agents.items():
            partner = self.BLUE if name == self.RED else self.RED
            for i, agent in enumerate(agents):
                agent.reward += 0.5 * hits[name][i] + 0.5 * hits[partner][i]
                agent.t += 1
        ended = self.agents[self.RED][0].t >= self.LENGTH
        out = self._decisions(ended)
        return out

    def _obs(self, name, i):
        cue = np.zeros(4, dtype=np.float32)
        cue[self.cues[name][i]] = 1.0
        cue[3] = 1.0
        return [vector_obs(cue)]

    def _decisions(self, ended):
        out = {name: [] for name in self.agents}
        if ended:
            for name, agents in self.agents.items():
                for i, agent in enumerate(agents):
                    out[name].append(agent.info(self._obs(name, i), done=True))
                self.agents[name] = [Agent(agent.id, agent.index) for agent in agents]
        self._draw()
        for name, agents in self.agents.items():
            for i, agent in enumerate(agents):
                out[name].append(agent.info(self._obs(name, i)))
        return out


SCENES = {"mixed": MixedScene, "coop": CoopScene}


# ------------------------------------------------------------------------ side channels


def read_side_channels(data: bytes, engine: dict, parameters: dict) -> bool:
    """Apply the engine-configuration and environment-parameter messages in ``data``."""
    offset, changed = 0, False
    while offset < len(data):
        channel = uuid.UUID(bytes_le=bytes(data[offset : offset + 16]))
        (length,) = struct.unpack_from("<i", data, offset + 16)
        body = bytes(data[offset + 20 : offset + 20 + length])
        offset += 20 + length
        if channel == ENGINE_CHANNEL:
            (kind,) = struct.unpack_from("<i", body, 0)
            if kind == 0:
                engine["width"], engine["height"] = struct.unpack_from("<ii", body, 4)
            elif kind == 2:
                engine["time_scale"] = struct.unpack_from("<f", body, 4)[0]
            else:
                engine[ENGINE_FIELDS[kind]] = struct.unpack_from("<i", body, 4)[0]
            changed = True
        elif channel == PARAMETERS_CHANNEL:
            (size,) = struct.unpack_from("<i", body, 0)
            key = body[4 : 4 + size].decode("ascii")
            (kind,) = struct.unpack_from("<i", body, 4 + size)
            if kind == 0:
                parameters[key] = struct.unpack_from("<f", body, 8 + size)[0]
                changed = True
    return changed


# ---------------------------------------------------------------------------- the player


def message(output: UnityOutputProto | None = None) -> UnityMessageProto:
    msg = UnityMessageProto()
    msg.header.status = 200
    if output is not None:
        msg.unity_output.CopyFrom(output)
    return msg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlagents-port", type=int, required=True)
    parser.add_argument("--scene", choices=sorted(SCENES), default="mixed")
    parser.add_argument("--record", default=None)
    parser.add_argument("--die-after", type=int, default=0)
    args, _unity_args = parser.parse_known_args(argv)  # -nographics, -batchmode, -logFile

    channel = grpc.insecure_channel(f"localhost:{args.mlagents_port}")
    grpc.channel_ready_future(channel).result(timeout=60)
    stub = UnityToExternalProtoStub(channel)

    init = UnityOutputProto()
    init.rl_initialization_output.CopyFrom(
        UnityRLInitializationOutputProto(
            name="StandIn",
            communication_version="1.5.0",
            package_version="2.3.0",
            capabilities=UnityRLCapabilitiesProto(
                baseRLCapabilities=True,
                concatenatedPngObservations=True,
                compressedChannelMapping=True,
                hybridActions=True,
                trainingAnalytics=True,
                variableLengthObservation=True,
                multiAgentGroups=True,
            ),
        )
    )
    answer = stub.Exchange(message(init))
    seed = answer.unity_input.rl_initialization_input.seed
    answer = stub.Exchange(message())

    engine: dict = {}
    parameters: dict = {}
    scene = SCENES[args.scene](seed, parameters)
    announced: set[str] = set()
    steps = 0
    while True:
        if answer.header.status != 200:
            return 0  # Python closed the environment
        rl_input = answer.unity_input.rl_input
        if read_side_channels(rl_input.side_channel, engine, parameters) and args.record:
            tmp = f"{args.record}.tmp"
            with open(tmp, "w") as f:
                json.dump({"engine": engine, "parameters": parameters}, f)
            os.replace(tmp, args.record)
        if rl_input.command == QUIT:
            return 0
        if rl_input.command == RESET:
            infos = scene.reset()
        else:
            actions = {name: list(lst.value) for name, lst in rl_input.agent_actions.items()}
            infos = scene.step(actions)
            steps += 1
            if args.die_after and steps >= args.die_after:
                sys.stdout.flush()
                os._exit(3)
        output = UnityOutputProto()
        for name, agent_infos in infos.items():
            output.rl_output.agentInfos[name].value.extend(agent_infos)
            if agent_infos and name not in announced:
                continuous, branches = scene.BRAINS[name]
                output.rl_initialization_output.brain_parameters.append(
                    brain(name, continuous, branches)
                )
                announced.add(name)
        answer = stub.Exchange(message(output))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError:
        # Python went away without saying goodbye: a player quits as well.
        time.sleep(0)
        sys.exit(0)
