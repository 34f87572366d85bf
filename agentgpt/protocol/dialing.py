"""Env hosts that dial their trainer: the header that names them, and the rule for names.

An env host that cannot be reached (behind a firewall) opens the connection itself, to
the trainer's :data:`~agentgpt.protocol.routes.HOSTS_CONNECT` route, and names itself
in the upgrade's :data:`HOST_NAME_HEADER`; the trainer keeps each name's place in its
fleet, so a host that dials in again takes its place back.
"""

from __future__ import annotations

import re

__all__ = ["HOST_NAME_HEADER", "check_host_name"]

#: The upgrade's header that names the dialling host.
HOST_NAME_HEADER = "X-Agentgpt-Host"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_host_name(name: str) -> str:
    """``name`` if it can name a host (letters, digits, ``_.-``, 1 to 63 characters);
    ``ValueError`` otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"a host name is 1 to 63 letters, digits, '_', '.' or '-', got {name!r}")
    return name
