"""The README's main job, timed as a user runs it: local envs vs two local env servers,
on an idle machine and on one where other programs compete for every core.

Run from the repository root::

    python benchmarks/quickstart.py                       # the README's 100k steps
    python benchmarks/quickstart.py --total-steps 30000   # quicker

Each setup is one ``agentgpt train CartPole-v1 [--env-hosts 2]`` command in a child
process, exactly as the README runs it (default hyperparameters, its own run directory
in a temporary folder), and reports the command's wall-clock time and the training
steps per second it logged. "Busy" runs start one CPU-bound process per core first
(``--busy N`` changes how many) and stop them afterwards, which is what a shared
workstation or a CI runner looks like. Each "vs local" ratio compares setups under the
same load, measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

_SPIN = "while True:\n    pass\n"


@contextlib.contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """``count`` processes that each keep one core busy until the block ends."""
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def train_once(runs_dir: Path, name: str, total_steps: int, env_hosts: int) -> tuple[float, float]:
    """Run the README's training command; return (wall-clock seconds, logged steps/s)."""
    command = [
        sys.executable,
        "-m",
        "agentgpt",
        "train",
        "CartPole-v1",
        "--total-steps",
        str(total_steps),
        "--runs-dir",
        str(runs_dir),
        "--run-name",
        name,
        "--no-progress",
    ]
    if env_hosts:
        command += ["--env-hosts", str(env_hosts)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with open(runs_dir / name / "timing.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    return wall, float(last["steps_per_sec"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total-steps", type=int, default=100_000)
    parser.add_argument("--env-hosts", type=int, default=2)
    parser.add_argument(
        "--busy", type=int, default=os.cpu_count() or 1, help="Busy processes (default: cores)."
    )
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="agentgpt-quickstart-") as tmp:
        runs = Path(tmp)
        for load in ("idle", "busy"):
            with busy_cores(args.busy) if load == "busy" else contextlib.nullcontext():
                for hosts in (0, args.env_hosts):
                    label = "local" if hosts == 0 else f"--env-hosts {hosts}"
                    wall, sps = train_once(runs, f"{load}-{hosts}", args.total_steps, hosts)
                    print(f"  {load}, {label}: {wall:.1f} s, {sps:,.0f} steps/s", flush=True)
                    rows.append((load, label, wall, sps))

    print(f"\nCartPole-v1, {args.total_steps:,} steps, {os.cpu_count()} cores, busy={args.busy}\n")
    print("| load | setup | wall-clock (s) | steps/s | vs local |")
    print("|---|---|---:|---:|---:|")
    local = {load: sps for load, label, _, sps in rows if label == "local"}
    for load, label, wall, sps in rows:
        print(f"| {load} | {label} | {wall:.1f} | {sps:,.0f} | {sps / local[load]:.2f}x |")


if __name__ == "__main__":
    main()
