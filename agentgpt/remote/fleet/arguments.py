"""Checking a fleet's arguments before any request goes out.

A typo in a URL or a count should fail at once with a clear message, not after the fleet
has waited ``fleet_timeout`` for hosts that can never answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agentgpt.remote.transport import check_url

__all__ = ["check_arguments"]


#: The scheme of hosts that dial in (``train --listen``): named, not addressed.
DIALLED_SCHEME = "dialled"


def check_arguments(
    urls: Sequence[str],
    envs_per_host: int | Sequence[int],
    seed: int | None,
    step_timeout: float,
    connect_timeout: float,
    fleet_timeout: float,
    backoff_initial: float,
    backoff_max: float,
) -> tuple[list[str], list[int], int | None]:
    """The URLs (without trailing ``/``), one env count per host, and the seed; raises
    ``ValueError`` (``TypeError`` for a lone URL string) for anything unusable."""
    if isinstance(urls, str):
        raise TypeError("urls must be a sequence of URLs, not one string")
    urls = [str(url).rstrip("/") for url in urls]
    if not urls:
        raise ValueError("a fleet needs at least one env host URL")
    if len(set(urls)) != len(urls):
        raise ValueError(f"env host URLs repeat: {urls}")
    for url in urls:
        if not url.startswith(DIALLED_SCHEME + "://"):
            check_url(url)
    if isinstance(envs_per_host, int | np.integer):
        counts = [int(envs_per_host)] * len(urls)
    else:
        counts = [int(c) for c in envs_per_host]
        if len(counts) != len(urls):
            raise ValueError(
                f"envs_per_host has {len(counts)} numbers for {len(urls)} hosts; give one"
                " number, or one per host"
            )
    if any(c < 1 for c in counts):
        raise ValueError(f"envs_per_host must be at least 1, got {counts}")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
    ):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    for name, value in (
        ("step_timeout", step_timeout),
        ("connect_timeout", connect_timeout),
        ("fleet_timeout", fleet_timeout),
        ("backoff_initial", backoff_initial),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    if not backoff_max >= backoff_initial:
        raise ValueError(
            f"backoff_max ({backoff_max!r}) must be at least backoff_initial ({backoff_initial!r})"
        )
    return urls, counts, None if seed is None else int(seed)
