"""How many threads the PPO update uses when the user does not say.

The update's batched matrix work runs faster on every core of an idle machine. On a busy
one it collapses: each parallel op ends at a barrier that waits for its slowest thread,
and a thread that lost its core to another program waits a whole scheduler slice, op
after op. On a 2-core machine with two other busy processes, a CartPole run measured
about 14x slower with 2 update threads than with 1 (``benchmarks/quickstart.py``). So a
run starts with as many update threads as there are cores that no other task wants.

The count is chosen once, when the run starts, and kept: thread counts change the
update's floating-point sums, and a run must not change its numbers with the load of the
moment. Seeded runs are therefore reproducible on the same machine in the same conditions;
fix ``torch_threads`` to make them reproducible across conditions.
"""

from __future__ import annotations

import time

__all__ = ["free_cores"]

_LOADAVG = "/proc/loadavg"


def free_cores(
    cores: int, samples: int = 5, interval: float = 0.01, loadavg_path: str = _LOADAVG
) -> int:
    """``cores`` minus the tasks that keep running besides this one (at least 1).

    Reads the instantaneous runnable count in Linux's ``/proc/loadavg`` (which counts
    the calling thread) ``samples`` times and keeps the smallest, so a task that only
    wakes for a moment is not mistaken for a competitor. Elsewhere, or when the file
    cannot be read, every core is free.
    """
    runnable = None
    for sample in range(samples):
        if sample:
            time.sleep(interval)
        try:
            with open(loadavg_path) as handle:
                count = int(handle.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return cores
        runnable = count if runnable is None else min(runnable, count)
    if runnable is None:
        return cores
    return max(1, min(cores, cores - (runnable - 1)))
