"""The one interface every place env servers can run behind: URLs, a key, and close.

A trainer only needs to know where env servers answer and which key opens them; how they
got there (child processes here, servers someone else runs, later a tunnel, a cloud
instance or a Kubernetes pod) is the provider's business. Every provider is a context
manager: ``with provider as hosts:`` starts what it has to and :meth:`close` undoes it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType

__all__ = ["HostProvider", "RunningHosts"]


class HostProvider(abc.ABC):
    """Env servers somewhere, reachable at :attr:`urls` with :attr:`api_key`."""

    #: The key the servers require (None when they require none).
    api_key: str | None

    @property
    @abc.abstractmethod
    def urls(self) -> list[str]:
        """One base URL per server, stable for the provider's lifetime."""

    @abc.abstractmethod
    def start(self) -> HostProvider:
        """Make the servers answer (start them, open the way to them); return self."""

    @abc.abstractmethod
    def close(self) -> None:
        """Undo everything :meth:`start` did; safe to call more than once."""

    def __enter__(self) -> HostProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class RunningHosts(HostProvider):
    """Servers that already run elsewhere: nothing to start, nothing to undo."""

    def __init__(self, urls: Sequence[str], api_key: str | None = None) -> None:
        if not urls:
            raise ValueError("give at least one env server URL")
        self._urls = [str(url) for url in urls]
        self.api_key = api_key

    @property
    def urls(self) -> list[str]:
        return list(self._urls)

    def start(self) -> RunningHosts:
        return self

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"RunningHosts({self._urls!r})"
