"""The env table: who owns which env, how many sub-envs each key holds, how many env
processes the server runs, and idle expiry.

Pure bookkeeping on the event loop; nothing here blocks. Closing an env (which may block)
is delegated to a ``closer`` callback supplied by the server, called once per removed env.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from agentgpt.envhost import errors
from agentgpt.envhost.adapters import EnvAdapter
from agentgpt.protocol import routes
from agentgpt.protocol.fields import ENV_KEY
from agentgpt.protocol.requests import short_repr

__all__ = ["Session", "EnvTable"]

#: How many removed env keys are remembered to explain a later 404 ("closed", "idle").
_TOMBSTONES = 4096


@dataclass(eq=False)
class Session:
    """One env made by one owner. Calls on it are serialized by ``lock``."""

    key: str
    owner: str
    name: str
    adapter: EnvAdapter
    last_used: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    #: The task closing the env once it is removed from the table.
    close_task: asyncio.Task | None = None
    #: Calls running or queued on ``lock``; an env with calls in flight is never idle.
    in_flight: int = 0
    #: Processes the env runs (one per sub-env of an async vector env, else none).
    processes: int = 0
    #: Whether its calls run on the event loop itself (an env its operator marked fast,
    #: until its calls prove slow), rather than in a worker thread.
    inline: bool = False
    #: Inline calls in a row that took longer than the inline limit.
    inline_overruns: int = 0

    @property
    def num_envs(self) -> int:
        return self.adapter.num_envs


class EnvTable:
    """Envs by key, per-owner sub-env counts and the server's process count (the 429
    limits), and idle expiry."""

    def __init__(
        self,
        max_envs_per_key: int,
        idle_timeout: float,
        closer: Callable[[Session], None],
        clock: Callable[[], float] = time.monotonic,
        max_processes: int = 0,
    ) -> None:
        if max_envs_per_key < 1:
            raise ValueError("max_envs_per_key must be at least 1")
        if max_processes < 0:
            raise ValueError("max_processes must be at least 0")
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        self.max_envs_per_key = max_envs_per_key
        self.max_processes = max_processes
        #: Env processes running or being started, over every key.
        self.processes = 0
        self.idle_timeout = idle_timeout
        self._closer = closer
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._by_owner: dict[str, dict[str, Session]] = {}
        self._counts: dict[str, int] = {}
        self._tombstones: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def reserve(
        self,
        owner: str,
        num_envs: int,
        processes: int = 0,
        remedy: str = "",
    ) -> None:
        """Count ``num_envs`` sub-envs against ``owner`` and ``processes`` env processes
        against the server before building them (429 if either is over its limit).
        ``remedy``: what else the client can do about the process limit, besides closing
        envs."""
        held = self._counts.get(owner, 0)
        if held + num_envs > self.max_envs_per_key:
            raise errors.too_many_envs(
                f"this API key holds {held} sub-envs; {num_envs} more would exceed the limit of"
                f" {self.max_envs_per_key}. Close envs you no longer need (POST {routes.CLOSE})."
            )
        if processes and self.processes + processes > self.max_processes:
            raise errors.too_many_processes(
                f"this env would start {processes} env process(es); the server runs"
                f" {self.processes} and its limit is {self.max_processes} (--max-processes)."
                f" {remedy}Close envs that run processes and that you no longer need"
                f" (POST {routes.CLOSE})."
            )
        self._counts[owner] = held + num_envs
        self.processes += processes

    def release(self, owner: str, num_envs: int, processes: int = 0) -> None:
        left = self._counts.get(owner, 0) - num_envs
        if left > 0:
            self._counts[owner] = left
        else:
            self._counts.pop(owner, None)
        self.processes = max(0, self.processes - processes)

    def add(self, owner: str, name: str, adapter: EnvAdapter, processes: int = 0) -> Session:
        """Record an env whose sub-envs and processes were already reserved for ``owner``."""
        session = Session(uuid.uuid4().hex, owner, name, adapter, self._clock())
        session.processes = processes
        self._sessions[session.key] = session
        self._by_owner.setdefault(owner, {})[session.key] = session
        return session

    def get(self, owner: str, env_key: str | None) -> Session:
        """The owner's env for ``env_key``, or its only env when ``env_key`` is ``None``."""
        if env_key is None:
            owned = self._by_owner.get(owner)
            if not owned:
                raise errors.env_not_found(
                    f"this API key owns no env; make one with POST {routes.MAKE}"
                )
            if len(owned) > 1:
                raise errors.ambiguous_env(
                    f"this API key owns {len(owned)} envs; say which one with {ENV_KEY}"
                )
            session = next(iter(owned.values()))
        else:
            session = self._sessions.get(env_key)
            if session is None or session.owner != owner:
                raise errors.env_not_found(self._not_found_message(owner, env_key))
        if self.is_idle(session):
            self.remove(session, f"closed after being idle for more than {self.idle_timeout:g} s")
            raise errors.env_not_found(self._not_found_message(owner, session.key))
        return session

    def touch(self, session: Session) -> None:
        session.last_used = self._clock()

    def is_idle(self, session: Session) -> bool:
        if session.in_flight or session.lock.locked():
            return False
        return self._clock() - session.last_used > self.idle_timeout

    def remove(self, session: Session, reason: str) -> None:
        """Forget ``session``, free its slots and hand it to the closer (once)."""
        if session.closed:
            return
        session.closed = True
        self._sessions.pop(session.key, None)
        owned = self._by_owner.get(session.owner)
        if owned is not None:
            owned.pop(session.key, None)
            if not owned:
                del self._by_owner[session.owner]
        # Its processes count until the closer has stopped them (processes_stopped).
        self.release(session.owner, session.num_envs)
        self._tombstones[session.key] = (session.owner, reason)
        while len(self._tombstones) > _TOMBSTONES:
            self._tombstones.popitem(last=False)
        self._closer(session)

    def processes_stopped(self, session: Session) -> None:
        """The closer is done with ``session``: its processes no longer count."""
        self.processes = max(0, self.processes - session.processes)
        session.processes = 0

    def remove_idle(self) -> int:
        """Remove every idle env; returns how many."""
        idle = [s for s in self._sessions.values() if self.is_idle(s)]
        for session in idle:
            self.remove(session, f"closed after being idle for more than {self.idle_timeout:g} s")
        return len(idle)

    def _not_found_message(self, owner: str, env_key: str) -> str:
        tomb = self._tombstones.get(env_key)
        if tomb is not None and tomb[0] == owner:
            return f"env {env_key!r} no longer exists: {tomb[1]}"
        return f"no env with {ENV_KEY} {short_repr(env_key)} for this API key"
