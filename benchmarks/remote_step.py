"""Env-steps per second: local Gymnasium vs. the same env stepped through an env server.

Run from the repository root::

    python benchmarks/remote_step.py

In one run it measures CartPole-v1 stepped locally, through ``RemoteEnv`` in JSON and in
MessagePack, and as a 64-env vector env locally and through ``RemoteVectorEnv`` in both
encodings, then prints a table with each remote figure as a ratio of its local one. The
server runs in its own process (as in real use, so client and server do not share a GIL)
on a free loopback port; pass ``--url`` to measure an already running server instead.
Actions are random but fixed by a seed, and episodes are reset as they end, so every
figure counts real env steps.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gymnasium
import httpx
import numpy as np

from agentgpt.remote import RemoteEnv, RemoteVectorEnv

ENV_NAME = "CartPole-v1"

_SERVE = """
import sys
from agentgpt.envhost import EnvServer
EnvServer(api_keys=[sys.argv[2]]).run(host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@dataclass
class Result:
    name: str
    steps_per_s: float
    baseline: str | None  # name of the local result this one is compared with


@contextlib.contextmanager
def server_process(api_key: str, startup_timeout: float = 60.0) -> Iterator[str]:
    """Start an env server in a child process; yield its URL once it answers ``/health``.

    The server binds port 0 itself and prints the URL, so no other process can take the
    port between choosing and binding it.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, "0", api_key],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = _read_url(process)
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"env server exited with code {process.returncode}")
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"env server did not answer within {startup_timeout} s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_url(process: subprocess.Popen) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return match.group(1)
    raise RuntimeError(f"env server exited with code {process.wait()} before listening")


def time_single(env: gymnasium.Env, steps: int, warmup: int) -> float:
    """Steps per second of one env under random actions, resetting at episode ends."""
    actions = np.random.default_rng(0).integers(0, 2, size=steps + warmup)
    env.reset(seed=0)
    start = 0.0
    for i, action in enumerate(actions):
        if i == warmup:
            start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def time_vector(env: gymnasium.vector.VectorEnv, iterations: int, warmup: int) -> float:
    """Sub-env steps per second of a vector env (next-step autoreset handles episode ends)."""
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, size=(iterations + warmup, env.num_envs))
    env.reset(seed=0)
    start = 0.0
    for i, action in enumerate(actions):
        if i == warmup:
            start = time.perf_counter()
        env.step(action)
    return iterations * env.num_envs / (time.perf_counter() - start)


def run(url: str, api_key: str | None, steps: int, iterations: int, num_envs: int) -> list[Result]:
    warmup = max(steps // 10, 50)
    vector_warmup = max(iterations // 10, 5)
    results: list[Result] = []

    def measure(name: str, baseline: str | None, fn: Callable[[], float]) -> None:
        results.append(Result(name, fn(), baseline))
        print(f"  {name}: {results[-1].steps_per_s:,.0f} steps/s", file=sys.stderr)

    local_single = f"local {ENV_NAME}"
    local_vector = f"local {num_envs}-env vector"
    with gymnasium.make(ENV_NAME) as env:
        measure(local_single, None, lambda: time_single(env, steps, warmup))
    for encoding in ("json", "msgpack"):
        with RemoteEnv(url, ENV_NAME, api_key, encoding=encoding) as env:
            measure(f"remote {encoding} single env", local_single, lambda: time_single(env, steps, warmup))
    local = gymnasium.make_vec(ENV_NAME, num_envs=num_envs, vectorization_mode="sync")
    measure(local_vector, None, lambda: time_vector(local, iterations, vector_warmup))
    local.close()
    for encoding in ("json", "msgpack"):
        with RemoteVectorEnv(url, ENV_NAME, num_envs, api_key, encoding=encoding) as env:
            measure(
                f"remote {encoding} {num_envs}-env vector",
                local_vector,
                lambda: time_vector(env, iterations, vector_warmup),
            )
    return results


def format_table(results: list[Result]) -> str:
    by_name = {r.name: r for r in results}
    width = max(len(r.name) for r in results)
    lines = [f"| {'measurement':<{width}} | {'env-steps/s':>12} | {'vs. local':>9} |"]
    lines.append(f"|{'-' * (width + 2)}|{'-' * 13}:|{'-' * 10}:|")
    for r in results:
        ratio = "" if r.baseline is None else f"{r.steps_per_s / by_name[r.baseline].steps_per_s:.3f}"
        lines.append(f"| {r.name:<{width}} | {r.steps_per_s:>12,.0f} | {ratio:>9} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="single-env steps per measurement")
    parser.add_argument("--iterations", type=int, default=200, help="vector steps per measurement")
    parser.add_argument("--num-envs", type=int, default=64, help="sub-envs of the vector env")
    parser.add_argument("--url", help="measure this running server instead of starting one")
    parser.add_argument("--api-key", help="key for --url (a started server gets a random one)")
    args = parser.parse_args(argv)

    if args.url:
        results = run(args.url, args.api_key, args.steps, args.iterations, args.num_envs)
    else:
        key = secrets.token_hex(16)
        with server_process(key) as url:
            results = run(url, key, args.steps, args.iterations, args.num_envs)
    print(format_table(results))


if __name__ == "__main__":
    main()
