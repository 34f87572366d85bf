"""A run's hyperparameters as SageMaker's string map, and back.

``CreateTrainingJob`` takes ``HyperParameters`` as a map of strings, and the container
finds the same map in ``/opt/ml/input/config/hyperparameters.json``. Strings travel as
they are, booleans as ``true``/``false``, numbers and mappings as JSON, so the console
shows readable values; a ``None`` is left out (the field's default, which is ``None``
for every optional hyperparameter, applies). Reading the map back is driven by the
field types of the hyperparameter dataclass, which the container passes in: this module
never imports the trainer.

Besides the trainer's own fields the map carries :data:`CONTAINER_KEYS`: ``env_urls``
(comma-separated), ``env_api_key_secret`` (a Secrets Manager id, never the key) and
``fleet_timeout`` (seconds every env server may be down before the job fails).

The trainer prints one :func:`metric_line` per update; :data:`METRIC_DEFINITIONS` are
the regular expressions SageMaker matches them with, so return and losses show in the
console and in CloudWatch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "CONTAINER_KEYS",
    "METRIC_DEFINITIONS",
    "METRIC_NAMES",
    "MAX_VALUE_LENGTH",
    "from_string_map",
    "metric_line",
    "to_string_map",
]

#: Keys of the map that are the container's, not the trainer's: the env servers, the
#: secret holding their key, and the seconds they may all be down before the job stops.
CONTAINER_KEYS = ("env_urls", "env_api_key_secret", "fleet_timeout")
#: SageMaker's limit on one hyperparameter value.
MAX_VALUE_LENGTH = 2500
#: The metrics each update prints (names from the trainer's metrics.csv).
METRIC_NAMES = (
    "global_step",
    "mean_return",
    "mean_length",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
)
_PREFIX = "agentgpt-metrics"
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
#: ``CreateTrainingJob``'s ``AlgorithmSpecification.MetricDefinitions``.
METRIC_DEFINITIONS = [
    {"Name": f"train:{name}", "Regex": rf"{_PREFIX} .*\b{name}={_NUMBER}"} for name in METRIC_NAMES
]


def _encode(name: str, value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"hyperparameter {name}: {value!r} is not a finite number")
        text = json.dumps(value)
    elif isinstance(value, (Mapping, list, tuple)):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    else:
        raise TypeError(f"hyperparameter {name}: cannot send a {type(value).__name__}")
    if len(text) > MAX_VALUE_LENGTH:
        raise ValueError(
            f"hyperparameter {name}: {len(text)} characters, SageMaker allows {MAX_VALUE_LENGTH}"
        )
    return text


def to_string_map(
    hyperparameters: Any,
    *,
    env_urls: Sequence[str] = (),
    env_api_key_secret: str | None = None,
    fleet_timeout: float | None = None,
) -> dict[str, str]:
    """The ``HyperParameters`` map of a training job.

    ``hyperparameters``: a dataclass (``Hyperparameters``) or a mapping of field names.
    ``env_urls``: env servers the job trains on (none: envs inside the container).
    """
    if dataclasses.is_dataclass(hyperparameters) and not isinstance(hyperparameters, type):
        values = dataclasses.asdict(hyperparameters)
    else:
        values = dict(hyperparameters)
    clash = sorted(set(values) & set(CONTAINER_KEYS))
    if clash:
        raise ValueError(f"{', '.join(clash)} are not trainer hyperparameters; pass them apart")
    strings = {name: _encode(name, value) for name, value in values.items() if value is not None}
    urls = [url.strip() for url in env_urls]
    if any("," in url or not url for url in urls):
        raise ValueError("env_urls: each URL must be non-empty and hold no comma")
    if urls:
        strings["env_urls"] = _encode("env_urls", ",".join(urls))
    if env_api_key_secret:
        strings["env_api_key_secret"] = env_api_key_secret
    if fleet_timeout is not None:
        strings["fleet_timeout"] = _encode("fleet_timeout", float(fleet_timeout))
    return strings


def _decode(name: str, hint: Any, text: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) == 1:
            return _decode(name, options[0], text)
        raise TypeError(f"hyperparameter {name}: unsupported type {hint}")
    try:
        if hint is str:
            return text
        if hint is bool:
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError("expected true or false")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is dict or origin is dict or hint is list or origin is list:
            value = json.loads(text)
            expected = dict if (hint is dict or origin is dict) else list
            if not isinstance(value, expected):
                raise ValueError(f"expected a JSON {expected.__name__}")
            return value
    except ValueError as exc:
        raise ValueError(f"hyperparameter {name}: cannot read {text!r} ({exc})") from None
    raise TypeError(f"hyperparameter {name}: unsupported type {hint}")


def from_string_map(
    kind: type, strings: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a ``HyperParameters`` map back: ``(fields, container)``.

    ``fields`` holds the dataclass ``kind``'s fields with their types restored (build
    the dataclass with ``kind(**fields)``); ``container`` the container's settings:
    ``env_urls`` (a list), ``env_api_key_secret`` and ``fleet_timeout`` (None when not
    given). An unknown key raises ``ValueError`` naming it.
    """
    hints = typing.get_type_hints(kind)
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(strings) - names - set(CONTAINER_KEYS))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s): {', '.join(unknown)}")
    fields: dict[str, Any] = {}
    for name, text in strings.items():
        if name in CONTAINER_KEYS:
            continue
        if not isinstance(text, str):
            raise ValueError(f"hyperparameter {name}: expected a string, got {type(text).__name__}")
        fields[name] = _decode(name, hints[name], text)
    urls_text = strings.get("env_urls", "")
    timeout = strings.get("fleet_timeout")
    container = {
        "env_urls": [url.strip() for url in urls_text.split(",") if url.strip()],
        "env_api_key_secret": strings.get("env_api_key_secret") or None,
        "fleet_timeout": None if timeout is None else _decode("fleet_timeout", float, timeout),
    }
    if container["fleet_timeout"] is not None and container["fleet_timeout"] <= 0:
        raise ValueError("hyperparameter fleet_timeout: must be positive")
    return fields, container


def metric_line(row: Mapping[str, Any]) -> str:
    """One update's metrics as the line :data:`METRIC_DEFINITIONS` match; empty values
    (no episode finished yet) are left out."""
    parts = [_PREFIX, f"update={row.get('update', '')}"]
    for name in METRIC_NAMES:
        value = row.get(name, "")
        if value == "" or value is None:
            continue
        parts.append(
            f"{name}={float(value):.6g}" if name != "global_step" else f"{name}={int(value)}"
        )
    return " ".join(parts)


def parse_metric_line(line: str) -> dict[str, float]:
    """The metrics a line holds, as SageMaker's definitions read them (for tests and logs)."""
    found = {}
    for definition in METRIC_DEFINITIONS:
        match = re.search(definition["Regex"], line)
        if match:
            found[definition["Name"]] = float(match.group(1))
    return found
