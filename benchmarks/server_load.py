"""Many clients at once on one env server: throughput, latency, and the limits holding.

Run from the repository root::

    python benchmarks/server_load.py

It starts an env server (with its default limits) in a child process, then for each
client count (``--clients``, default 1, 10, 50, 100) runs that many client threads, each
with its own ``RemoteEnv`` (CartPole-v1, MessagePack, over HTTP and over the streaming
session), stepping random actions for ``--seconds``. It reports steps/s over all clients,
the p50 and p99 of one step's round trip, errors, and the server's resident memory at the
end of each round, which must not grow with the rounds (no leak). All clients share this
process's interpreter, so the figures include the clients' own contention for it: they
measure the server's behaviour under many connections, not its peak speed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from remote_step import server_process  # noqa: E402

from agentgpt.remote import RemoteEnv, RemoteEnvError  # noqa: E402

ENV_NAME = "CartPole-v1"


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def round_of(url: str, key: str, clients: int, seconds: float, transport: str) -> dict:
    """``clients`` threads stepping their own env for ``seconds``; latencies in ms."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client(index: int) -> None:
        rng = np.random.default_rng(index)
        try:
            env = RemoteEnv(url, ENV_NAME, key, transport=transport, seed=index)
        except RemoteEnvError:
            errors[index] += 1
            start.wait()
            return
        with env:
            env.reset()
            start.wait()
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    _, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
                except RemoteEnvError:
                    errors[index] += 1
                    continue
                latencies[index].append((time.perf_counter() - began) * 1e3)
                if terminated or truncated:
                    env.reset()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.perf_counter() - began
    every = np.concatenate([np.asarray(x) for x in latencies if x] or [np.zeros(0)])
    return {
        "steps_per_s": every.size / elapsed,
        "p50": float(np.percentile(every, 50)) if every.size else float("nan"),
        "p99": float(np.percentile(every, 99)) if every.size else float("nan"),
        "errors": sum(errors),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,10,50,100", help="client counts, comma separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each round")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    key = secrets.token_hex(16)
    rows = []
    with server_process(key) as (url, pid):
        for transport in ("http", "stream"):
            for clients in counts:
                result = round_of(url, key, clients, args.seconds, transport)
                result.update(transport=transport, clients=clients, rss=_rss_mb(pid))
                rows.append(result)
                print(
                    f"  {transport} x{clients}: {result['steps_per_s']:,.0f} steps/s,"
                    f" p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms,"
                    f" {result['errors']} errors, server {result['rss']:.0f} MB",
                    file=sys.stderr,
                )
    print(f"{os.cpu_count()} CPU cores, 1-minute load average {load:.2f} at start")
    print("| transport | clients | steps/s | p50 ms | p99 ms | errors | server RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['transport']} | {r['clients']} | {r['steps_per_s']:,.0f} | {r['p50']:.2f}"
            f" | {r['p99']:.2f} | {r['errors']} | {r['rss']:.0f} |"
        )


if __name__ == "__main__":
    main()
