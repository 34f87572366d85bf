"""The names of the fields in the protocol's bodies and answers, each spelled once.

``docs/protocol.md`` ("Routes") gives each field's type, default and meaning; the
builders and parsers in :mod:`~agentgpt.protocol.requests` and
:mod:`~agentgpt.protocol.answers` are the only code that spells them out.
"""

from __future__ import annotations

# ---------------------------------------------------------------- requests

#: The env a request is about (every route but ``/make``, ``/make_vec`` and ``/health``).
ENV_KEY = "env_key"
ENV_NAME = "env_name"
#: An accepted alias of :data:`ENV_NAME`.
ENV_ID = "env_id"
SEED = "seed"
KWARGS = "kwargs"
RENDER_MODE = "render_mode"
AUTORESET_MODE = "autoreset_mode"
NUM_ENVS = "num_envs"
VECTORIZATION_MODE = "vectorization_mode"
OPTIONS = "options"
#: In a vector env's reset ``options``: which sub-envs to reset.
RESET_MASK = "reset_mask"
ACTION = "action"

# ---------------------------------------------------------------- answers

OBSERVATION = "observation"
REWARD = "reward"
TERMINATED = "terminated"
TRUNCATED = "truncated"
INFO = "info"
OBSERVATION_SPACE = "observation_space"
ACTION_SPACE = "action_space"
#: ``possible_agents`` of a multi-agent env, ``null`` for other envs.
AGENTS = "agents"
#: The server process's random id: it changes when the server restarts.
INCARNATION = "incarnation"
#: ``/make`` and ``/make_vec``: the env's ``metadata`` (one sub-env's for a vector env),
#: reduced to plain data.
METADATA = "metadata"
#: ``/reset`` and ``/step`` (single-agent and vector envs): type notes for the answer's
#: fields, present only when some value's Python or NumPy type is not what the plain
#: reading gives (:mod:`agentgpt.wire.pytypes`).
TYPES = "types"
#: ``/render``: what the env's ``render()`` returned (``null`` without a render mode).
RENDER = "render"
CLOSED = "closed"
STATUS = "status"
VERSION = "version"

# ---------------------------------------------------------------- info keys of same-step mode

#: The terminal observation of an episode that the same step reset.
FINAL_OBSERVATION = "final_observation"
#: Vector envs: which sub-envs have a :data:`FINAL_OBSERVATION`.
FINAL_OBSERVATION_MASK = "_final_observation"
#: The terminal info of an episode that the same step reset.
FINAL_INFO = "final_info"
