"""``GPTAPI``: the Python client of the inference server, and the same API in-process.

:class:`GPTAPI` speaks to ``agentgpt serve`` over the project's keep-alive HTTP/1.1
transport (:class:`~agentgpt.remote.transport.HttpTransport`), in MessagePack by default,
so observations and actions travel as typed raw arrays. :meth:`GPTAPI.local` gives the
same methods on a policy loaded in this process, for a game that embeds Python. Both raise
the exceptions of :mod:`agentgpt.remote.errors` (``BadRequestError`` for a refused call,
``AuthError`` for a bad key, ...), with the server's message.

This module imports neither torch nor the server: a game needs only the core install to
call a served policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from agentgpt import wire
from agentgpt.remote.base_transport import DEFAULT_TIMEOUT, Encoding
from agentgpt.remote.errors import remote_error
from agentgpt.remote.transport import HttpTransport

__all__ = ["GPTAPI", "LocalGPTAPI"]

AgentId = str | int
_ARRAY_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def _ids(agent_ids: Sequence[AgentId] | np.ndarray) -> list[AgentId]:
    if isinstance(agent_ids, (str, int)):
        raise TypeError("agent_ids must be a list of ids, not a single id")
    return [i.item() if isinstance(i, np.generic) else i for i in agent_ids]


def observations_to_wire(space: gymnasium.Space, count: int, observations: Any) -> Any:
    """Observations for ``count`` agents as a request carries them: one stacked array for
    array spaces, else a list of per-agent wire values. Accepts a stacked batch (a vector
    env's layout, Dict and Tuple batches included) or a list of per-agent values."""
    if isinstance(space, _ARRAY_SPACES) and not isinstance(observations, dict):
        array = np.asarray(observations)
        if array.dtype != object and array.shape == (count, *space.shape):
            return np.ascontiguousarray(array)
    if (
        isinstance(space, spaces.Dict)
        and isinstance(observations, dict)
        or isinstance(space, spaces.Tuple)
        and isinstance(observations, tuple)
    ):
        observations = list(iterate(batch_space(space, count), observations))
    return [wire.value_to_wire(space, value) for value in observations]


def actions_from_wire(space: gymnasium.Space, count: int, raw: Any) -> Any:
    """An answer's actions as a batch in Gymnasium's vector layout: an array ``[N, ...]``
    for array spaces, a dict or tuple of such arrays for Dict and Tuple spaces."""
    if isinstance(space, _ARRAY_SPACES):
        array = np.asarray(raw, dtype=space.dtype)
        return array.reshape(count, *space.shape)
    if len(raw) != count:
        raise ValueError(f"expected {count} actions, got {len(raw)}")
    values = [wire.value_from_wire(space, item) for item in raw]
    return concatenate(space, values, create_empty_array(space, count))


class _PolicyClient:
    """The methods both clients share; subclasses carry the calls."""

    session: str | None

    def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _body(self, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None}
        if self.session is not None:
            body["session"] = self.session
        return body

    # ------------------------------------------------------------ the spaces
    _info: dict[str, Any] | None = None
    _observation_space: gymnasium.Space | None = None
    _action_space: gymnasium.Space | None = None

    def info(self) -> dict[str, Any]:
        """The server's ``/info``: spaces (wire form), K, maximum K, model checksum, run
        name, version, limits and batching statistics."""
        answer = self._call("info", self._body())
        self._info = answer
        self._observation_space = wire.space_from_wire(answer["observation_space"])
        self._action_space = wire.space_from_wire(answer["action_space"])
        return answer

    @property
    def observation_space(self) -> gymnasium.Space:
        if self._observation_space is None:
            self.info()
        assert self._observation_space is not None
        return self._observation_space

    @property
    def action_space(self) -> gymnasium.Space:
        if self._action_space is None:
            self.info()
        assert self._action_space is not None
        return self._action_space

    # ------------------------------------------------------------ acting
    def select_action(
        self,
        agent_ids: Sequence[AgentId],
        observations: Any,
        terminated_agent_ids: Sequence[AgentId] | None = None,
        deterministic: bool = True,
    ) -> Any:
        """One action per agent, in ``agent_ids`` order.

        ``observations``: one per agent, as a stacked batch (an array ``[N, ...]``, or a
        dict/tuple of arrays for Dict/Tuple spaces) or a list. An id in
        ``terminated_agent_ids`` ended its previous episode: its context is cleared first,
        so its observation in this call starts a new episode. Returns an array ``[N, ...]``
        (a dict or tuple of arrays for Dict/Tuple action spaces).
        """
        ids = _ids(agent_ids)
        body = self._body(
            agent_ids=ids,
            observations=observations_to_wire(self.observation_space, len(ids), observations),
            terminated_agent_ids=None if not terminated_agent_ids else _ids(terminated_agent_ids),
            deterministic=None if deterministic else False,
        )
        answer = self._call("select_action", body)
        return actions_from_wire(self.action_space, len(ids), answer["actions"])

    def sample_action(self, agent_ids: Sequence[AgentId]) -> Any:
        """Uniformly random valid actions, one per agent (the session's seeded stream)."""
        ids = _ids(agent_ids)
        answer = self._call("sample_action", self._body(agent_ids=ids))
        return actions_from_wire(self.action_space, len(ids), answer["actions"])

    # ------------------------------------------------------------ settings
    def set_control_value(self, value: float, agent_ids: Sequence[AgentId] | None = None) -> None:
        """The control value (0.0 plays randomly, 1.0 at full skill) of the whole session,
        or of the listed agents."""
        ids = None if agent_ids is None else _ids(agent_ids)
        self._call("set_control_value", self._body(value=float(value), agent_ids=ids))

    def get_control_value(self, agent_id: AgentId | None = None) -> float:
        """The session's control value, or the one ``agent_id`` acts with."""
        ids = None if agent_id is None else _ids([agent_id])
        answer = self._call("get_control_value", self._body(agent_ids=ids))
        return float(answer["values"][0] if ids else answer["value"])

    def set_num_input_states(self, k: int) -> None:
        """The context length K the session's agents act from, in [1, maximum K]."""
        self._call("set_num_input_states", self._body(value=int(k)))

    def get_num_input_states(self) -> int:
        return int(self._call("get_num_input_states", self._body())["value"])

    def close(self) -> None:
        """Release the connection (idempotent)."""

    def __enter__(self) -> _PolicyClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class GPTAPI(_PolicyClient):
    """A served policy (``agentgpt serve``), called over HTTP.

    ``url``: the server's base URL; ``api_key``: its bearer key, if it has any;
    ``session``: a name that keeps this client's agents apart from other games on the
    same server (agent ids are scoped to the key and the session). ``encoding``:
    ``"msgpack"`` (default; arrays travel as raw bytes) or ``"json"``. One keep-alive
    connection; not thread-safe (one client per thread).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        session: str | None = None,
        encoding: Encoding = "msgpack",
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self._transport = HttpTransport(url, api_key, encoding=encoding, timeout=timeout)

    @staticmethod
    def local(
        run_dir: str | Path, *, session: str | None = None, **engine_options: Any
    ) -> LocalGPTAPI:
        """The same API on a policy loaded in this process (needs the ``train`` extra)."""
        return LocalGPTAPI(run_dir, session=session, **engine_options)

    def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "select_action":
            return self._transport.post("/select_action", body)
        return self._transport.post("/invocations", {"method": method, **body})

    def close(self) -> None:
        self._transport.close()


class LocalGPTAPI(_PolicyClient):
    """:class:`GPTAPI`'s methods on a policy in this process: no server, no network, the
    same per-agent contexts and the same errors. ``engine_options`` are those of
    :class:`~agentgpt.serve.engine.PolicyEngine` (``max_agents``, ``seed``, ...)."""

    OWNER = "local"

    def __init__(
        self, run_dir: str | Path, *, session: str | None = None, **engine_options: Any
    ) -> None:
        from agentgpt.serve.engine import PolicyEngine, load_model

        self.session = session
        self.engine = PolicyEngine(load_model(run_dir), **engine_options)

    def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        from agentgpt.service.errors import ApiError

        engine = self.engine
        try:
            if method == "select_action":
                result = engine.act([engine.prepare_act(self.OWNER, body)])[0]
                if isinstance(result, ApiError):
                    raise result
                return result
            if method == "info":
                return engine.info(self.OWNER, body, {})
            return getattr(engine, method)(self.OWNER, body)
        except ApiError as error:
            raise remote_error(error.status, error.error_type, error.message) from None
