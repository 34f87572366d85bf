"""Latency and throughput of a served policy (``agentgpt serve``) vs the in-process actor.

Run from the repository root::

    python benchmarks/serve_latency.py                      # trains a small CartPole run first
    python benchmarks/serve_latency.py --run-dir runs/cartpole --calls 1000

In one run it measures, on the same CartPole-v1 policy (default model, K = 16):

- the in-process actor (``Agent.make_actor(n).act``) for 1 and 64 agents: per call;
- the served policy for 1 and 64 agents through ``GPTAPI`` (one keep-alive connection), in
  JSON and MessagePack: per call, round trip included. The server runs in a child process
  (``agentgpt serve``), as in production, so client and server do not share an
  interpreter;
- throughput: one client calling serially with 4 agents, then 16 client processes with 4
  agents each calling at once, for ``--seconds`` each: actions per second, and the mean
  number of calls and agents the server merged into one forward pass (from ``/info``).
  The two alternate for ``--throughput-rounds`` rounds and each reports its best.

Every agent's context is full (K observations) before timing starts, so every call does
the steady-state work of a long episode. The latency setups run in ``--rounds``
interleaved rounds of ``--calls / --rounds`` calls each, and each reports p50 and p99 of
its best round (lowest p50), so a busy spell of a shared machine does not land on one
setup only.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agentgpt import GPTAPI


def percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.asarray(samples) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def train_run(directory: Path) -> Path:
    from agentgpt.train.hyperparameters import Hyperparameters
    from agentgpt.train.run import train

    hp = Hyperparameters(
        env_id="CartPole-v1",
        total_steps=2048,
        num_envs=4,
        rollout_steps=64,
        runs_dir=str(directory),
        run_name="cartpole",
        torch_threads=1,
        seed=0,
    )
    return Path(train(hp, show_progress=False).run_dir)


def observations(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0, 0.05, size=(n, 4)).astype(np.float32)


class ActorSetup:
    """The in-process actor for ``n`` agents (torch on one thread, as the server runs)."""

    def __init__(self, run_dir: Path, n: int) -> None:
        import torch

        from agentgpt.agent.checkpoint import load_agent

        torch.set_num_threads(1)
        self.actor = load_agent(run_dir).make_actor(n)
        self.n = n
        self.starts = np.ones(n, bool)
        self.rng = np.random.default_rng(0)

    def call(self) -> None:
        self.actor.act(observations(self.n, self.rng), self.starts)
        self.starts[:] = False

    def close(self) -> None:
        pass


class ServedSetup:
    """``GPTAPI`` for ``n`` agents over one keep-alive connection."""

    def __init__(self, url: str, n: int, encoding: str) -> None:
        self.api = GPTAPI(url, session=f"latency-{n}-{encoding}", encoding=encoding)
        self.api.info()
        self.ids = list(range(n))
        self.n = n
        self.rng = np.random.default_rng(1)

    def call(self) -> None:
        self.api.select_action(self.ids, observations(self.n, self.rng))

    def close(self) -> None:
        self.api.close()


def timed(setup: ActorSetup | ServedSetup, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        setup.call()
        samples.append(time.perf_counter() - began)
    return samples


def bench_latency(
    setups: dict[str, ActorSetup | ServedSetup], calls: int, warmup: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """p50 and p99 per setup, from its best of ``rounds`` interleaved rounds (a busy
    spell of a shared machine then lands on every setup, not on one)."""
    for setup in setups.values():
        timed(setup, warmup)
    best: dict[str, tuple[float, float]] = {}
    per_round = max(1, calls // rounds)
    for _ in range(rounds):
        for label, setup in setups.items():
            p50, p99 = percentiles(timed(setup, per_round))
            if label not in best or p50 < best[label][0]:
                best[label] = (p50, p99)
    return best


def _client(
    url: str, session: str, agents: int, seconds: float, start: float, out: mp.Queue
) -> None:
    rng = np.random.default_rng(abs(hash(session)) % 2**32)
    ids = list(range(agents))
    done = 0
    with GPTAPI(url, session=session) as api:
        for _ in range(20):  # fill the contexts
            api.select_action(ids, observations(agents, rng))
        while time.time() < start:
            time.sleep(0.001)
        deadline = start + seconds
        while time.time() < deadline:
            api.select_action(ids, observations(agents, rng))
            done += agents
    out.put(done)


def bench_throughput(url: str, clients: int, agents: int, seconds: float) -> tuple[float, dict]:
    with GPTAPI(url) as api:
        before = api.info()["stats"]
    out: mp.Queue = mp.Queue()
    start = time.time() + 3.0
    processes = [
        mp.Process(target=_client, args=(url, f"tp-{clients}-{i}", agents, seconds, start, out))
        for i in range(clients)
    ]
    for p in processes:
        p.start()
    total = sum(out.get() for _ in processes)
    for p in processes:
        p.join()
    with GPTAPI(url) as api:
        after = api.info()["stats"]
    batches = after["batches"] - before["batches"]
    merged = {
        "calls_per_pass": (after["batched_requests"] - before["batched_requests"])
        / max(batches, 1),
        "agents_per_pass": (after["batched_agents"] - before["batched_agents"]) / max(batches, 1),
    }
    return total / seconds, merged


def start_server(run_dir: Path, batch_wait_ms: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentgpt",
            "serve",
            str(run_dir),
            "--port",
            "0",
            "--log-level",
            "warning",
            "--batch-wait-ms",
            str(batch_wait_ms),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"on (http://\S+)", line)
        if found:
            return process, found.group(1)
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--throughput-rounds", type=int, default=3)
    parser.add_argument("--batch-wait-ms", type=float, default=0.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or train_run(Path(tmp))
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        process, url = start_server(run_dir, args.batch_wait_ms)
        try:
            setups: dict[str, ActorSetup | ServedSetup] = {}
            for n in (1, 64):
                setups[f"in-process actor, {n} agent(s)"] = ActorSetup(run_dir, n)
            for n in (1, 64):
                for encoding in ("json", "msgpack"):
                    setups[f"served, {n} agent(s), {encoding}"] = ServedSetup(url, n, encoding)
            results = bench_latency(setups, args.calls, args.warmup, args.rounds)
            for setup in setups.values():
                setup.close()
            print("\n| setup | p50 (ms) | p99 (ms) |\n|---|---|---|")
            for label, (p50, p99) in results.items():
                print(f"| {label} | {p50:.3f} | {p99:.3f} |")
            actor64 = results["in-process actor, 64 agent(s)"][0]
            served64 = results["served, 64 agent(s), msgpack"][0]
            print(
                f"\n64 agents, MessagePack: {served64 - actor64:+.3f} ms p50 vs the in-process actor"
            )

            best: dict[int, tuple[float, dict]] = {}
            for _ in range(args.throughput_rounds):
                for clients in (1, 16):
                    rate, merged = bench_throughput(url, clients, 4, args.seconds)
                    if clients not in best or rate > best[clients][0]:
                        best[clients] = (rate, merged)
            (serial, merged1), (concurrent, merged16) = best[1], best[16]
            print(
                "\n| clients x agents | actions/s | calls per forward pass |"
                " agents per forward pass |"
            )
            print("|---|---|---|---|")
            for label, rate, merged in (
                ("1 x 4 (serial)", serial, merged1),
                ("16 x 4", concurrent, merged16),
            ):
                print(
                    f"| {label} | {rate:,.0f} | {merged['calls_per_pass']:.2f} |"
                    f" {merged['agents_per_pass']:.1f} |"
                )
            print(
                f"\n16 concurrent clients: {concurrent / serial:.1f}x the actions/s of one serial client"
            )
            print(f"load average after: {os.getloadavg()[0]:.1f}")
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)


if __name__ == "__main__":
    main()
