"""The search space of ``agentgpt tune`` and the YAML file that narrows or fixes it.

A search space maps hyperparameter names (fields of
:class:`~agentgpt.train.hyperparameters.Hyperparameters`) to one of three kinds of
entry:

* :class:`Range`: a number between ``low`` and ``high`` (``log`` for a log scale,
  ``step`` for a grid);
* :class:`Choice`: one of a list of values;
* :class:`Fixed`: one value for every trial.

:data:`DEFAULT_SPACE` covers what matters most for PPO on a GPT policy. A tune file
(``--config``) changes it: its ``search`` section narrows, fixes, adds or drops entries,
its ``hyperparameters`` section sets what every trial starts from (exactly as an
``agentgpt train --config`` file), and its ``pruner`` section sets how losing trials
are stopped. Everything is checked before any trial trains (:func:`load_tune_file`,
:meth:`SearchSpace.check`), so a typo costs one line of output, not an hour of search.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentgpt.train.hyperparameters import Hyperparameters

__all__ = [
    "DEFAULT_SPACE",
    "Choice",
    "Fixed",
    "PrunerSettings",
    "Range",
    "SearchSpace",
    "TuneConfigError",
    "TuneFile",
    "load_tune_file",
]


class TuneConfigError(ValueError):
    """A tune file or search space that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Range:
    """A number in ``[low, high]``: a float, or an int for integer hyperparameters."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def describe(self) -> str:
        text = f"{_fmt(self.low)} .. {_fmt(self.high)}"
        if self.log:
            text += " (log)"
        if self.step is not None:
            text += f" step {_fmt(self.step)}"
        return text

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(_fmt(v) for v in self.values)

    def candidates(self) -> list[Any]:
        return list(self.values)


@dataclass(frozen=True)
class Fixed:
    """One value for every trial (not searched)."""

    value: Any

    def describe(self) -> str:
        return f"fixed at {_fmt(self.value)}"

    def candidates(self) -> list[Any]:
        return [self.value]


Entry = Range | Choice | Fixed

#: The search space used unless a tune file changes it. With automatic entropy tuning on
#: (the trainer's default) the entropy knob is the target the coefficient is adapted to,
#: ``target_entropy_start``; search ``ent_coef`` instead when ``adapt_entropy`` is off.
DEFAULT_SPACE: dict[str, Entry] = {
    "learning_rate": Range(1e-4, 3e-3, log=True),
    "target_entropy_start": Range(0.05, 0.6),
    "clip_range": Range(0.1, 0.3),
    "gae_lambda": Range(0.9, 0.99),
    "gamma": Choice((0.98, 0.99, 0.995, 0.999)),
    "rollout_steps": Choice((32, 64, 128, 256)),
    "num_input_states": Choice((4, 8, 16)),
    "d_model": Choice((32, 64, 128)),
}

#: Fields a trial's settings own (its name, place and evaluation schedule); a search
#: over them would make no sense.
NOT_SEARCHABLE = frozenset(
    {"env_id", "env_kwargs", "run_name", "runs_dir", "total_steps", "eval_every", "wandb"}
)

#: Fields whose values interact in the trainer's checks (window sizes, head counts); every
#: combination of their candidate values is validated before the search starts.
_STRUCTURAL = (
    "rollout_steps",
    "num_input_states",
    "max_input_states",
    "train_window",
    "window_stride",
    "d_model",
    "num_heads",
    "num_envs",
    "num_minibatches",
)

#: Validating more combinations than this would take noticeable time; larger spaces
#: check their corners only.
_MAX_COMBINATIONS = 4096


@dataclass
class SearchSpace:
    """Hyperparameter names mapped to :class:`Range`, :class:`Choice` or :class:`Fixed`."""

    entries: dict[str, Entry] = field(default_factory=lambda: dict(DEFAULT_SPACE))

    @property
    def searched(self) -> dict[str, Entry]:
        """The entries that vary between trials."""
        return {k: v for k, v in self.entries.items() if not isinstance(v, Fixed)}

    def suggest(self, trial: Any, base: Hyperparameters) -> Hyperparameters:
        """The hyperparameters of one trial: ``base`` with every entry drawn by the
        Optuna ``trial`` (fixed entries set as they are)."""
        values: dict[str, Any] = {}
        for name, entry in self.entries.items():
            if isinstance(entry, Fixed):
                values[name] = entry.value
            elif isinstance(entry, Choice):
                values[name] = trial.suggest_categorical(name, list(entry.values))
            elif _is_int_field(name):
                step = 1 if entry.step is None else int(entry.step)
                values[name] = trial.suggest_int(
                    name, int(entry.low), int(entry.high), step=step, log=entry.log
                )
            else:
                values[name] = trial.suggest_float(
                    name, float(entry.low), float(entry.high), step=entry.step, log=entry.log
                )
        return apply(base, values)

    def check(self, base: Hyperparameters) -> None:
        """Raise :class:`TuneConfigError` unless every trial this space can draw is a
        valid run: each combination of the structural fields' candidate values (window
        sizes, context length, width and heads) is built once."""
        options = []
        for name in _STRUCTURAL:
            entry = self.entries.get(name)
            options.append([(name, v) for v in entry.candidates()] if entry else [])
        options = [o for o in options if o]
        if math.prod(len(o) for o in options) > _MAX_COMBINATIONS:
            options = [[o[0], o[-1]] for o in options]
        for combo in itertools.product(*options):
            values = dict(combo)
            try:
                hp = apply(base, values)
                if hp.d_model % hp.num_heads:
                    raise ValueError(f"d_model must be divisible by num_heads ({hp.num_heads})")
            except (ValueError, TypeError) as exc:
                shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
                raise TuneConfigError(
                    f"the search space allows a trial that cannot train ({shown}): {exc}"
                ) from None

    def describe(self) -> list[tuple[str, str]]:
        return [(name, entry.describe()) for name, entry in self.entries.items()]


def apply(base: Hyperparameters, values: Mapping[str, Any]) -> Hyperparameters:
    """``base`` with ``values`` set; a context length above the position table's size
    grows the table with it (``max_input_states`` is only an upper limit of K)."""
    values = dict(values)
    k = values.get("num_input_states", base.num_input_states)
    if "max_input_states" not in values and k > base.max_input_states:
        values["max_input_states"] = k
    return base.replace(**values)


@dataclass(frozen=True)
class PrunerSettings:
    """How losing trials are stopped: ``kind`` is ``median`` (stop a trial whose
    evaluation is below the median of earlier trials at the same point),
    ``halving`` (asynchronous successive halving) or ``none``. ``startup_trials``:
    trials that finish before the median rule prunes; ``warmup_reports``: evaluations
    of each trial that are never pruned on."""

    kind: str = "median"
    startup_trials: int = 5
    warmup_reports: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("median", "halving", "none"):
            raise TuneConfigError(f"pruner kind must be median, halving or none, not {self.kind!r}")
        if self.startup_trials < 0 or self.warmup_reports < 0:
            raise TuneConfigError("pruner startup_trials and warmup_reports must be >= 0")


@dataclass
class TuneFile:
    """What a tune file holds: the base hyperparameters of every trial, the search
    space, and the pruner settings."""

    base: dict[str, Any] = field(default_factory=dict)
    space: SearchSpace = field(default_factory=SearchSpace)
    pruner: PrunerSettings = field(default_factory=PrunerSettings)


_SECTIONS = ("hyperparameters", "search", "pruner")


def load_tune_file(path: str | Path | None) -> TuneFile:
    """Read a tune file (or return the defaults for ``None``); raise
    :class:`TuneConfigError` with one line naming the first problem."""
    if path is None:
        return TuneFile()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise TuneConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TuneConfigError(f"{path} is not valid YAML: {_first_line(exc)}") from None
    return parse_tune_data(data or {}, str(path))


def parse_tune_data(data: Any, where: str = "the tune file") -> TuneFile:
    """:func:`load_tune_file` for an already-parsed mapping."""
    if not isinstance(data, dict):
        raise TuneConfigError(f"{where} must be a mapping with sections {', '.join(_SECTIONS)}")
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise TuneConfigError(
            f"{where}: unknown section {', '.join(sorted(map(str, unknown)))} "
            f"(sections: {', '.join(_SECTIONS)})"
        )
    base = data.get("hyperparameters") or {}
    if not isinstance(base, dict):
        raise TuneConfigError(f"{where}: hyperparameters must be a mapping")
    _check_names(base, where, "hyperparameters")
    try:
        Hyperparameters.from_dict(base)
    except (ValueError, TypeError) as exc:
        raise TuneConfigError(f"{where}: hyperparameters: {exc}") from None

    entries = dict(DEFAULT_SPACE)
    search = data.get("search") or {}
    if not isinstance(search, dict):
        raise TuneConfigError(f"{where}: search must be a mapping of hyperparameter names")
    _check_names(search, where, "search")
    for name, spec in search.items():
        if name in NOT_SEARCHABLE:
            raise TuneConfigError(
                f"{where}: search: {name} cannot be searched (set it under hyperparameters"
                " or with a flag)"
            )
        if spec is None:
            entries.pop(name, None)  # not searched: every trial uses the base value
        else:
            entries[name] = parse_entry(name, spec, where)

    pruner = data.get("pruner") or {}
    if isinstance(pruner, str):
        pruner = {"kind": pruner}
    if not isinstance(pruner, dict):
        raise TuneConfigError(f"{where}: pruner must be a mapping or a kind")
    names = {f.name for f in dataclasses.fields(PrunerSettings)}
    unknown = set(pruner) - names
    if unknown:
        raise TuneConfigError(
            f"{where}: pruner: unknown setting {', '.join(sorted(map(str, unknown)))} "
            f"(settings: {', '.join(sorted(names))})"
        )
    try:
        settings = PrunerSettings(**pruner)
    except TypeError as exc:
        raise TuneConfigError(f"{where}: pruner: {exc}") from None
    return TuneFile(base=base, space=SearchSpace(entries), pruner=settings)


def parse_entry(name: str, spec: Any, where: str = "the tune file") -> Entry:
    """One search entry from its YAML form: a scalar fixes the value, a list gives the
    choices, a mapping ``{low, high, log, step}`` a range (``{choices: [...]}`` and
    ``{value: x}`` are the long forms of the other two)."""
    what = f"{where}: search: {name}"
    kind = _field_kind(name)
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        return Fixed(_coerce(spec, kind, what))
    keys = set(spec)
    if keys == {"value"}:
        return Fixed(_coerce(spec["value"], kind, what))
    if "choices" in keys:
        if keys != {"choices"}:
            raise TuneConfigError(f"{what}: choices cannot be mixed with other keys")
        values = spec["choices"]
        if not isinstance(values, list) or not values:
            raise TuneConfigError(f"{what}: empty list of choices")
        coerced = tuple(_coerce(v, kind, what) for v in values)
        if len(set(map(repr, coerced))) != len(coerced):
            raise TuneConfigError(f"{what}: repeated choices")
        return Choice(coerced)
    allowed = {"low", "high", "log", "step"}
    if not {"low", "high"} <= keys or not keys <= allowed:
        raise TuneConfigError(
            f"{what}: a range needs low and high (optional log, step); a list gives choices"
            ", a single value fixes it"
        )
    if kind not in (int, float):
        raise TuneConfigError(f"{what}: a range needs a numeric hyperparameter")
    low, high = (_number(spec[k], kind, f"{what}: {k}") for k in ("low", "high"))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise TuneConfigError(f"{what}: log must be true or false")
    step = spec.get("step")
    if step is not None:
        step = _number(step, kind, f"{what}: step")
        if step <= 0:
            raise TuneConfigError(f"{what}: step must be positive")
        if log:
            raise TuneConfigError(f"{what}: a log range cannot have a step")
    if low > high:
        raise TuneConfigError(f"{what}: empty range (low {_fmt(low)} > high {_fmt(high)})")
    if log and low <= 0:
        raise TuneConfigError(f"{what}: a log range needs low > 0")
    return Range(low, high, log=log, step=step)


# ----------------------------------------------------------------------------- helpers
def _check_names(mapping: Mapping[Any, Any], where: str, section: str) -> None:
    known = set(Hyperparameters.field_names())
    unknown = [str(k) for k in mapping if k not in known]
    if unknown:
        raise TuneConfigError(
            f"{where}: {section}: unknown hyperparameter {', '.join(sorted(unknown))}"
        )


def _field_kind(name: str) -> type:
    hint = typing.get_type_hints(Hyperparameters)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return typing.get_origin(base) or base


def _is_int_field(name: str) -> bool:
    return _field_kind(name) is int


def _number(value: Any, kind: type, what: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # YAML reads 1e-4 (no dot) as a string; accept numeric text.
        try:
            value = float(value) if isinstance(value, str) else None
        except ValueError:
            value = None
        if value is None:
            raise TuneConfigError(f"{what} must be a number") from None
    if kind is int:
        if float(value) != int(value):
            raise TuneConfigError(f"{what} must be a whole number")
        return int(value)
    return float(value)


def _coerce(value: Any, kind: type, what: str) -> Any:
    if value is None:
        return None
    if kind in (int, float):
        return _number(value, kind, what)
    if kind is bool and not isinstance(value, bool):
        raise TuneConfigError(f"{what} must be true or false")
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
