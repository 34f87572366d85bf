"""Autoreset mode names on the wire, and Gymnasium's modes they stand for.

``docs/protocol.md`` ("Autoreset modes") describes each one.
"""

from __future__ import annotations

from gymnasium.vector import AutoresetMode

from agentgpt.protocol.fields import FINAL_OBSERVATION, FINAL_OBSERVATION_MASK

__all__ = [
    "AUTORESET_MODES",
    "GYMNASIUM_INFO_NAMES",
    "WIRE_INFO_NAMES",
    "autoreset_mode_from_wire",
    "autoreset_mode_to_wire",
]

#: Wire name -> Gymnasium mode.
AUTORESET_MODES: dict[str, AutoresetMode] = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}

#: Same-step mode's info keys of a Gymnasium vector env -> their wire names (the pre-1.0
#: names, which single and multi-agent envs use too).
WIRE_INFO_NAMES: dict[str, str] = {
    "final_obs": FINAL_OBSERVATION,
    "_final_obs": FINAL_OBSERVATION_MASK,
}
#: Wire names -> Gymnasium's, for clients that rebuild a vector env's infos.
GYMNASIUM_INFO_NAMES: dict[str, str] = {wire: gym for gym, wire in WIRE_INFO_NAMES.items()}


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
