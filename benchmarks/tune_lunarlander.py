"""One measured tuning run on LunarLander-v3: the tuned return vs the defaults at an
equal step budget.

Run from the repository root (needs the ``tune`` extra and Box2D, ``pip install
"gymnasium[box2d]"``)::

    python benchmarks/tune_lunarlander.py                         # about 45 min on 2 cores
    python benchmarks/tune_lunarlander.py --jobs 4 --trials 40    # a bigger machine
    python benchmarks/tune_lunarlander.py --budget-steps 4096 --trials 2 --seeds 1 \\
        --eval-episodes 2                                         # a smoke test

What it does, all through the command line a user runs:

1. ``agentgpt tune LunarLander-v3 --trials N --budget-steps S`` with the default search
   space and pruner (every trial trains with seed 1 and is scored on deterministic
   episodes with seeds 1, 2, ...);
2. for each of ``--seeds`` *other* training seeds, ``agentgpt train`` with the defaults
   and ``agentgpt train --config best.yaml``, both for exactly S steps;
3. each of those runs evaluated on ``--eval-episodes`` deterministic episodes with seeds
   from 10,000 on, which no trial was scored on.

Held-out training and evaluation seeds keep the comparison honest: the search picks the
best of many runs on seed 1, and its score there is biased upwards. The script prints a
Markdown table and writes every number to ``results.json`` in the output folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = "LunarLander-v3"
EVAL_SEED = 10_000


def run(command: list[str]) -> float:
    """Run an ``agentgpt`` command; return its wall-clock seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "agentgpt", *command], check=True)
    return time.perf_counter() - started


def evaluate(run_dir: Path, episodes: int) -> float:
    from agentgpt.agent.evaluate import evaluate as play

    return play(run_dir, episodes=episodes, seed=EVAL_SEED).mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-steps", type=int, default=300_000, help="steps per run")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3, help="held-out training seeds")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--storage", default=None, help="study storage (default: SQLite)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: temp)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="tune-lunarlander-"))
    runs = out / "runs"
    study = "bench-lunarlander"
    tune = [
        "tune",
        ENV,
        "--trials",
        str(args.trials),
        "--jobs",
        str(args.jobs),
        "--budget-steps",
        str(args.budget_steps),
        "--runs-dir",
        str(runs),
        "--study",
        study,
        "--no-live",
    ]
    if args.storage:
        tune += ["--storage", args.storage]
    tune_seconds = run(tune)
    best = runs / study / "best.yaml"

    rows: list[dict[str, object]] = []
    for seed in range(2, 2 + args.seeds):
        for setup, extra in (("defaults", []), ("tuned", ["--config", str(best)])):
            name = f"{setup}-s{seed}"
            seconds = run(
                [
                    "train",
                    ENV,
                    *extra,
                    "--seed",
                    str(seed),
                    "--total-steps",
                    str(args.budget_steps),
                    "--runs-dir",
                    str(runs),
                    "--run-name",
                    name,
                    "--no-progress",
                ]
            )
            score = evaluate(runs / name, args.eval_episodes)
            rows.append({"setup": setup, "seed": seed, "return": score, "seconds": seconds})
            print(f"{setup:8s} seed {seed}: return {score:8.1f} ({seconds:.0f} s)", flush=True)

    means = {
        setup: statistics.fmean(float(r["return"]) for r in rows if r["setup"] == setup)
        for setup in ("defaults", "tuned")
    }
    result = {
        "env": ENV,
        "budget_steps": args.budget_steps,
        "trials": args.trials,
        "jobs": args.jobs,
        "tune_seconds": tune_seconds,
        "eval_episodes": args.eval_episodes,
        "runs": rows,
        "mean_return": means,
        "best_yaml": best.read_text(),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))

    print()
    print(f"| {ENV}, {args.budget_steps:,} steps per run | mean return | runs |")
    print("|---|---:|---:|")
    for setup in ("defaults", "tuned"):
        print(f"| {setup} | {means[setup]:.1f} | {args.seeds} |")
    print(f"\nTuning: {args.trials} trials in {tune_seconds / 60:.1f} min; results in {out}")


if __name__ == "__main__":
    main()
