"""Training throughput on env servers vs local envs, and what one slow server costs.

Run from the repository root::

    python benchmarks/fleet_throughput.py              # 64 envs, 20 updates per setup
    python benchmarks/fleet_throughput.py --updates 5  # quicker

In one run it trains CartPole-v1 (default hyperparameters, 64 envs) for the same number
of updates in several setups and reports training env-steps per second (collection and PPO
updates together, setup excluded). The setups run in turn, ``--repeat`` rounds of all
of them, and each reports its best round, so a slow spell of a shared machine does not
land on one setup only:

- ``local``: a local Gymnasium sync vector env (64 envs) in the trainer's process;
- ``1 host``: one env server (a child process) serving all 64 envs;
- ``4 hosts``: four env servers with 16 envs each;
- ``4 hosts, inline``: the same, with CartPole's calls on each server's event loop
  (``--inline-env``), as ``agentgpt train --env-hosts N`` starts its servers;
- ``4 hosts, 1 slow``: the same, but the first server's CartPole sleeps 5 ms in every
  step (``benchmarks/slow_env.py``), so that server answers a 16-env step in ~80 ms.

The remote setups run over each transport of ``--transports`` (HTTP and the streaming
session by default); the slow-host setup over the last one.

Each remote setup collects asynchronously (``Fleet``): the trainer acts for whichever
servers have answered, one batched forward pass at a time. The table shows each figure
as a ratio of ``local``, and the slow-host figure as a ratio of the healthy 4-host one;
"rows from host 1" is the share of trained rows the first server's envs supplied.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from agentgpt.hosts.local import LocalEnvHosts
from agentgpt.remote.fleet import Fleet
from agentgpt.train.hyperparameters import Hyperparameters
from agentgpt.train.run import Trainer

SLOW_FACTORY = "benchmarks.slow_env:slow_cartpole"


def measure(hp: Hyperparameters, envs: object | None, label: str) -> tuple[float, float, float]:
    """Train ``hp.total_steps`` steps on ``envs`` (local when None): steps/s, mean policy
    lag of the last rollout, and the share of trained rows from the first host."""
    with tempfile.TemporaryDirectory() as runs:
        run_dir = Path(runs) / label
        run_dir.mkdir()
        trainer = Trainer(hp.replace(runs_dir=runs, run_name=label), run_dir, envs)
        started = time.perf_counter()
        result = trainer.run()
        elapsed = time.perf_counter() - started
        lag = getattr(trainer.collector, "policy_lag", 0.0)
        share = 1.0
        rows = getattr(trainer.collector, "rows_per_slot", None)
        if rows is not None and envs is not None:
            first_host = len(envs.hosts[0].slots)
            share = rows[:first_host].sum() / max(rows.sum(), 1)
    return result.global_step / elapsed, lag, share


def fleet_setup(
    hosts: int, envs_per_host: int, slow_host: bool, seed: int, transport: str, inline: bool
) -> tuple:
    registrations = [
        {"CartPole-v1": SLOW_FACTORY} if slow_host and i == 0 else None for i in range(hosts)
    ]
    launched = LocalEnvHosts(
        hosts, host_register=registrations, inline_envs=["CartPole-v1"] if inline else ()
    ).start()
    fleet = Fleet.from_urls(
        launched.urls,
        "CartPole-v1",
        envs_per_host=envs_per_host,
        api_key=launched.api_key,
        seed=seed,
        transport=transport,
    )
    return launched, fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds over all setups; the best of each counts"
    )
    parser.add_argument(
        "--transports",
        default="http,stream",
        help="how the remote setups' requests travel, comma separated (http, stream)",
    )
    args = parser.parse_args()
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    hp = Hyperparameters(
        env_id="CartPole-v1", num_envs=args.envs, seed=args.seed, checkpoint_every=10**9
    )
    hp = hp.replace(total_steps=hp.batch_steps * args.updates)

    # One update first, untimed: the first run in a process pays one-off costs (torch
    # kernels, imports) that would otherwise be charged to whichever setup runs first.
    measure(hp.replace(total_steps=hp.batch_steps), None, "warm-up")
    setups = [("local", 0, args.envs, False, "", False)]
    for transport in transports:
        setups += [
            (f"1 host, {transport}", 1, args.envs, False, transport, False),
            (f"4 hosts, {transport}", 4, args.envs // 4, False, transport, False),
            (f"4 hosts, inline, {transport}", 4, args.envs // 4, False, transport, True),
        ]
    slow_setup = (f"4 hosts, 1 slow, {transports[-1]}", 4, args.envs // 4, True, transports[-1])
    setups.append((*slow_setup, False))
    results: dict[str, tuple[float, float, float]] = {}
    for round_ in range(args.repeat):
        for label, hosts, per_host, slow, transport, inline in setups:
            name = f"{label.replace(' ', '-').replace(',', '')}-{round_}"
            if hosts == 0:
                figure = measure(hp, None, name)
            else:
                launched, fleet = fleet_setup(hosts, per_host, slow, args.seed, transport, inline)
                try:
                    figure = measure(hp, fleet, name)
                finally:
                    fleet.close()
                    launched.close()
            print(f"  round {round_ + 1}, {label}: {figure[0]:,.0f} steps/s", file=sys.stderr)
            if label not in results or figure[0] > results[label][0]:
                results[label] = figure

    local = results["local"][0]
    healthy = results[f"4 hosts, {transports[-1]}"][0]
    print(
        f"\nCartPole-v1, {args.envs} envs, {args.updates} updates "
        f"({hp.total_steps:,} steps) per setup, best of {args.repeat} rounds\n"
    )
    print("| setup | steps/s | vs local | policy lag (updates) | rows from host 1 |")
    print("|---|---:|---:|---:|---:|")
    for label, (sps, lag, share) in results.items():
        print(f"| {label} | {sps:,.0f} | {sps / local:.2f}x | {lag:.2f} | {share:.0%} |")
    slow = results[f"4 hosts, 1 slow, {transports[-1]}"][0]
    print(f"\n4 hosts with one slow / healthy 4 hosts: {slow / healthy:.2f}x")


if __name__ == "__main__":
    main()
