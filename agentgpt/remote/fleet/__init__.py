"""Many env servers as one asynchronous, fault-tolerant vector env.

:class:`Fleet` drives the envs of many env servers ("hosts") at once, EnvPool-style:
``recv()`` returns whichever envs have answered as a :class:`FleetBatch`, ``send()``
steps them again, and requests to every host stay in flight meanwhile. A host that dies,
hangs or restarts only cuts its own envs' trajectories (reported once per slot) and is
retried with backoff; only when every host stays down past ``fleet_timeout`` does
``recv()`` raise :class:`FleetDownError`. See ``docs/fleet.md``.
"""

from __future__ import annotations

from agentgpt.remote.fleet.batch import FleetBatch
from agentgpt.remote.fleet.faults import FleetDownError
from agentgpt.remote.fleet.fleet import Fleet
from agentgpt.remote.fleet.hosts import HostStatus

__all__ = ["Fleet", "FleetBatch", "FleetDownError", "HostStatus"]
