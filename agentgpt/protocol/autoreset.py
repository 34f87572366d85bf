"""Autoreset mode names on the wire, and Gymnasium's modes they stand for.

``docs/protocol.md`` ("Autoreset modes") describes each one.
"""

from __future__ import annotations

from gymnasium.vector import AutoresetMode

__all__ = ["AUTORESET_MODES", "autoreset_mode_from_wire", "autoreset_mode_to_wire"]

#: Wire name -> Gymnasium mode.
AUTORESET_MODES: dict[str, AutoresetMode] = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}


def autoreset_mode_from_wire(name: str) -> AutoresetMode:
    """The Gymnasium mode of a wire name (``ValueError`` for an unknown one)."""
    try:
        return AUTORESET_MODES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown autoreset_mode {name!r}; expected one of {list(AUTORESET_MODES)}"
        ) from None


def autoreset_mode_to_wire(mode: AutoresetMode | str) -> str:
    """The wire name of a Gymnasium mode, given as the enum, its value (``"NextStep"``)
    or a wire name."""
    if isinstance(mode, AutoresetMode):
        mode = mode.value
    for name, enum in AUTORESET_MODES.items():
        if mode in (name, enum.value):
            return name
    raise ValueError(f"unknown autoreset_mode {mode!r}; expected one of {list(AUTORESET_MODES)}")
