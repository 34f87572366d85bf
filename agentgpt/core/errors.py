"""Errors every env source shares, whatever runs the envs."""

from __future__ import annotations

__all__ = ["EnvsUnavailable"]


class EnvsUnavailable(RuntimeError):
    """No env has answered for longer than the source allows (for a fleet: every env
    server has been down for longer than ``fleet_timeout``).

    A trainer that sees it saves a checkpoint and stops, so the run can be resumed once
    the envs are back.
    """
