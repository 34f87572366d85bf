"""Our trainer with default settings vs Stable-Baselines3 PPO with its tuned hyperparameters.

Run from the repository root (needs the ``bench`` extra: stable-baselines3 and Box2D)::

    python benchmarks/train_vs_sb3.py                 # CartPole-v1 100k, LunarLander-v3 1M
    python benchmarks/train_vs_sb3.py --quick         # tiny budgets: checks that it runs
    python benchmarks/train_vs_sb3.py --envs CartPole-v1 --cartpole-steps 20000

For each env both trainers get the same step budget on the same machine, one after the
other. SB3 trains an MLP PPO with the rl-baselines3-zoo hyperparameters for that env
(``hyperparams/ppo.yml``; ``lin_x`` means linearly annealed from x to 0); ours trains the
GPT policy with :class:`~agentgpt.train.hyperparameters.Hyperparameters` defaults and
only ``env_id``, ``total_steps`` and ``seed`` set. Wall-clock covers training only. Both
agents are then evaluated the same way: deterministic actions, ``--eval-episodes``
episodes, episode ``i`` reset with seed ``eval_seed + i``.

The output is a table of each one's final mean eval return and wall-clock time, and the
ratios ours / SB3. Steps actually trained are shown too: each trainer rounds the budget
to whole rollouts (SB3 up, ours down).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

#: rl-baselines3-zoo's PPO hyperparameters (LunarLander-v3 uses the v2 entry).
ZOO_PPO: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "n_envs": 8,
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": "lin_0.001",
        "clip_range": "lin_0.2",
    },
    "LunarLander-v3": {
        "n_envs": 16,
        "n_steps": 1024,
        "batch_size": 64,
        "gae_lambda": 0.98,
        "gamma": 0.999,
        "n_epochs": 4,
        "ent_coef": 0.01,
    },
}

DEFAULT_STEPS = {"CartPole-v1": 100_000, "LunarLander-v3": 1_000_000}
QUICK_STEPS = {"CartPole-v1": 4_096, "LunarLander-v3": 16_384}


@dataclass
class Outcome:
    trainer: str
    env_id: str
    steps: int
    wall_s: float
    eval_mean: float
    eval_std: float


def _schedule(value: Any) -> Any:
    """rl-zoo's ``lin_x``: x at the start, annealed linearly to 0."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def evaluate_sb3(model: Any, env_id: str, episodes: int, seed: int) -> list[float]:
    """Deterministic returns of an SB3 model, episode ``i`` reset with ``seed + i``."""
    env = gymnasium.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def run_sb3(env_id: str, steps: int, seed: int, episodes: int, eval_seed: int) -> Outcome:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    params = dict(ZOO_PPO[env_id])
    n_envs = params.pop("n_envs")
    kwargs = {key: _schedule(value) for key, value in params.items()}
    envs = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    model = PPO("MlpPolicy", envs, seed=seed, device="cpu", verbose=0, **kwargs)
    started = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - started
    envs.close()
    returns = evaluate_sb3(model, env_id, episodes, eval_seed)
    return Outcome(
        "sb3",
        env_id,
        int(model.num_timesteps),
        wall,
        float(np.mean(returns)),
        float(np.std(returns)),
    )


def run_ours(
    env_id: str, steps: int, seed: int, episodes: int, eval_seed: int, runs_dir: Path
) -> Outcome:
    from agentgpt.agent.evaluate import evaluate
    from agentgpt.train.hyperparameters import Hyperparameters
    from agentgpt.train.run import train

    hp = Hyperparameters(
        env_id=env_id,
        total_steps=steps,
        seed=seed,
        runs_dir=str(runs_dir),
        run_name=f"{env_id}_bench_s{seed}_{steps}",
    )
    started = time.perf_counter()
    result = train(hp, show_progress=False)
    wall = time.perf_counter() - started
    evaluation = evaluate(result.run_dir, episodes=episodes, seed=eval_seed)
    return Outcome("ours", env_id, result.global_step, wall, evaluation.mean, evaluation.std)


def _ratio(ours: float, theirs: float) -> str:
    """``ours / theirs``; only meaningful (and only shown) when ``theirs`` is positive."""
    if theirs <= 0:
        return "n/a"
    return f"{ours / theirs:.2f}"


def print_table(pairs: list[tuple[Outcome | None, Outcome | None]]) -> None:
    header = (
        f"{'env':<16}{'trainer':<8}{'steps':>10}{'wall s':>10}{'eval mean':>12}{'eval std':>10}"
    )
    print(header)
    print("-" * len(header))
    for ours, sb3 in pairs:
        for outcome in (sb3, ours):
            if outcome is not None:
                print(
                    f"{outcome.env_id:<16}{outcome.trainer:<8}{outcome.steps:>10}"
                    f"{outcome.wall_s:>10.1f}{outcome.eval_mean:>12.1f}{outcome.eval_std:>10.1f}"
                )
        if ours is not None and sb3 is not None:
            # A return ratio reads as better/worse only when SB3's return is positive.
            print(
                f"{ours.env_id:<16}{'ours/sb3':<8}{'':>10}{_ratio(ours.wall_s, sb3.wall_s):>10}"
                f"{_ratio(ours.eval_mean, sb3.eval_mean):>12}"
            )
        print()


def main(argv: list[str] | None = None) -> list[Outcome]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--envs", nargs="+", default=list(ZOO_PPO), choices=list(ZOO_PPO), help="Envs to run."
    )
    parser.add_argument("--cartpole-steps", type=int, default=None, help="Default 100000.")
    parser.add_argument("--lunar-steps", type=int, default=None, help="Default 1000000.")
    parser.add_argument(
        "--quick", action="store_true", help="Tiny budgets (4096 / 16384 steps, 3 eval episodes)."
    )
    parser.add_argument("--trainers", nargs="+", default=["sb3", "ours"], choices=["sb3", "ours"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=None, help="Default 20.")
    parser.add_argument("--eval-seed", type=int, default=10_000)
    parser.add_argument("--runs-dir", type=Path, default=None, help="Default: a temporary dir.")
    parser.add_argument("--json", type=Path, default=None, help="Also write results here.")
    args = parser.parse_args(argv)

    budgets = dict(QUICK_STEPS if args.quick else DEFAULT_STEPS)
    if args.cartpole_steps is not None:
        budgets["CartPole-v1"] = args.cartpole_steps
    if args.lunar_steps is not None:
        budgets["LunarLander-v3"] = args.lunar_steps
    episodes = args.eval_episodes or (3 if args.quick else 20)

    outcomes: list[Outcome] = []
    pairs: list[tuple[Outcome | None, Outcome | None]] = []
    with tempfile.TemporaryDirectory(prefix="agentgpt-bench-") as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        for env_id in args.envs:
            steps = budgets[env_id]
            runners: dict[str, Callable[[], Outcome]] = {
                "sb3": lambda e=env_id, s=steps: run_sb3(e, s, args.seed, episodes, args.eval_seed),
                "ours": lambda e=env_id, s=steps: run_ours(
                    e, s, args.seed, episodes, args.eval_seed, runs_dir
                ),
            }
            done = {}
            for trainer in args.trainers:
                print(f"training {trainer} on {env_id} for {steps} steps ...", flush=True)
                done[trainer] = runners[trainer]()
                outcomes.append(done[trainer])
            pairs.append((done.get("ours"), done.get("sb3")))
    print()
    print_table(pairs)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    return outcomes


if __name__ == "__main__":
    main()
