"""Env-steps per second: local Gymnasium vs. the same env stepped through an env server.

Run from the repository root::

    python benchmarks/remote_step.py

In one run it measures the ceiling, a raw loopback TCP round trip between two Python
processes (a few bytes each way, nothing parsed), with both ends blocking on their
sockets and with both polling them; CartPole-v1 stepped locally, and through
``RemoteEnv`` over HTTP (JSON and MessagePack) and over the streaming session
(MessagePack), the latter also to a server that steps CartPole inline, and to one such
server with busy-polling off at both ends; and a 64-env vector env locally and through
``RemoteVectorEnv`` the same ways. It prints a table with each single-env figure as a
ratio of both ceilings and of local stepping, and each vector figure as a ratio of local
stepping. The server runs
in its own process (as in real use, so client and server do not share a GIL) on a free
loopback port; pass ``--url`` to measure an already running server instead. Actions are
random but fixed by a seed, and episodes are reset as they end, so every figure counts
real env steps.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from agentgpt.core.busy_poll import LIMIT_ENV
from agentgpt.protocol import routes
from agentgpt.remote import HttpTransport, NoAnswerError, RemoteEnv, RemoteVectorEnv

ENV_NAME = "CartPole-v1"

_ECHO = """
import socket, sys
polling = sys.argv[1] == "polling"
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
conn.setblocking(not polling)
while True:
    try:
        data = conn.recv(65536)
    except BlockingIOError:
        continue
    if not data:
        break
    conn.sendall(data)
"""

_SERVE = """
import sys
from agentgpt.envhost import EnvServer
inline = ["CartPole-v1"] if sys.argv[3].startswith("inline") else []
polling = {} if sys.argv[3] != "inline-blocking" else {"busy_poll_us": 0}
EnvServer(api_keys=[sys.argv[2]], inline_envs=inline, **polling).run(
    host="127.0.0.1", port=int(sys.argv[1]), log_level="warning"
)
"""


@dataclass
class Result:
    name: str
    steps_per_s: float
    #: CPU time per env step of this process and of the server process (``None``: unknown).
    client_us: float | None
    server_us: float | None
    baseline: str | None  # name of the local result this one is compared with


class Meter:
    """Wall time and CPU time of the client and (on Linux) the server over one measurement.

    CPU time per step shows which side costs what, and unlike steps/s it barely moves when
    other processes compete for the cores.
    """

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self._start = (0.0, 0.0, None)

    def _server_cpu(self) -> float | None:
        if self.server_pid is None:
            return None
        try:
            with open(f"/proc/{self.server_pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # not Linux
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        self._start = (time.perf_counter(), time.process_time(), self._server_cpu())

    def stop(self, name: str, steps: int, baseline: str | None) -> Result:
        wall = time.perf_counter() - self._start[0]
        client = time.process_time() - self._start[1]
        server_end, server_start = self._server_cpu(), self._start[2]
        server = None if server_end is None or server_start is None else server_end - server_start
        return Result(
            name,
            steps / wall,
            client / steps * 1e6,
            None if server is None else server / steps * 1e6,
            baseline,
        )


@contextlib.contextmanager
def server_process(
    api_key: str, inline: bool = False, startup_timeout: float = 60.0, polling: bool = True
) -> Iterator[tuple[str, int]]:
    """Start an env server in a child process; yield its URL and pid once it answers.

    The server binds port 0 itself and prints the URL, so no other process can take the
    port between choosing and binding it. ``polling=False`` (inline servers only): the
    server never busy-polls for a connection's next request.
    """
    mode = ("inline" if polling else "inline-blocking") if inline else "threads"
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, "0", api_key, mode],
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
                with contextlib.closing(HttpTransport(url, api_key, timeout=1.0)) as probe:
                    probe.get(routes.HEALTH)
                break
            except NoAnswerError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"env server did not answer within {startup_timeout} s")
            time.sleep(0.1)
        yield url, process.pid
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


CEILING = "TCP round trip (ceiling)"
POLLED_CEILING = "TCP round trip, both ends polling"


def tcp_ceiling(round_trips: int, repeat: int, polling: bool = False) -> Result:
    """Round trips of 8 bytes over loopback TCP to an echo process: what any protocol
    between two Python processes on this machine can at best reach, one request at a time.

    Both ends block on their sockets (the ceiling), or, with ``polling``, both spin on
    non-blocking reads instead, so that neither process ever sleeps: on a VM this
    removes the cost of waking a halted vCPU, what the clients' and servers' busy-polling
    (:mod:`agentgpt.core.busy_poll`) wins back.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", _ECHO, "polling" if polling else "blocking"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(not polling)
            best = None
            for _ in range(repeat):
                meter = Meter(process.pid)
                meter.start()
                for _ in range(round_trips):
                    sock.sendall(b"12345678")
                    while True:
                        try:
                            sock.recv(64)
                            break
                        except BlockingIOError:
                            continue
                name = POLLED_CEILING if polling else CEILING
                result = meter.stop(name, round_trips, None)
                if best is None or result.steps_per_s > best.steps_per_s:
                    best = result
            assert best is not None
            return best
    finally:
        process.kill()
        process.wait()


def time_single(env: gymnasium.Env, steps: int, warmup: int, meter: Meter) -> None:
    """Step one env under random actions, resetting at episode ends; ``meter`` times it."""
    actions = np.random.default_rng(0).integers(0, 2, size=steps + warmup)
    env.reset(seed=0)
    for i, action in enumerate(actions):
        if i == warmup:
            meter.start()
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()


def time_vector(
    env: gymnasium.vector.VectorEnv, iterations: int, warmup: int, meter: Meter
) -> None:
    """Step a vector env (next-step autoreset handles episode ends); ``meter`` times it."""
    actions = np.random.default_rng(0).integers(0, 2, size=(iterations + warmup, env.num_envs))
    env.reset(seed=0)
    for i, action in enumerate(actions):
        if i == warmup:
            meter.start()
        env.step(action)


def run(
    url: str,
    api_key: str | None,
    server_pid: int | None,
    steps: int,
    iterations: int,
    num_envs: int,
    repeat: int,
    inline: tuple[str, int] | None = None,
    blocking: tuple[str, int] | None = None,
) -> list[Result]:
    """Every measurement, each the fastest of ``repeat`` timed runs on the same env.

    The fastest run is the one least disturbed by other processes on the machine, which is
    what a comparison between local and remote stepping needs. ``inline``: the URL and
    pid of a second server that runs CartPole's calls on its event loop (``inline_envs``),
    measured over the stream too; ``blocking``: those of a third such server that never
    busy-polls, measured over the stream by clients that never busy-poll either.
    """
    warmup = max(steps // 10, 50)
    vector_warmup = max(iterations // 10, 5)
    results: list[Result] = []
    local_meter, remote_meter = Meter(None), Meter(server_pid)

    def best(timed: Callable[..., Result], *args: Any) -> None:
        result = max((timed(*args) for _ in range(repeat)), key=lambda r: r.steps_per_s)
        results.append(result)
        print(f"  {result.name}: {result.steps_per_s:,.0f} steps/s", file=sys.stderr)

    def single(env: gymnasium.Env, meter: Meter, name: str, baseline: str | None) -> Result:
        time_single(env, steps, warmup, meter)
        return meter.stop(name, steps, baseline)

    def vector(env: Any, meter: Meter, name: str, baseline: str | None) -> Result:
        time_vector(env, iterations, vector_warmup, meter)
        return meter.stop(name, iterations * num_envs, baseline)

    for polling in (False, True):
        ceiling = tcp_ceiling(steps, repeat, polling)
        results.append(ceiling)
        print(f"  {ceiling.name}: {ceiling.steps_per_s:,.0f} round trips/s", file=sys.stderr)
    local_single = f"local {ENV_NAME}"
    local_vector = f"local {num_envs}-env vector"
    with gymnasium.make(ENV_NAME) as env:
        best(single, env, local_meter, local_single, None)
    servers = [("", url, remote_meter)]
    if inline is not None:
        servers.append((" inline", inline[0], Meter(inline[1])))
    if blocking is not None:
        servers.append((BLOCKING, blocking[0], Meter(blocking[1])))
    ways = [(t, e, label, u, m) for label, u, m in servers for t, e in WAYS]
    ways = [w for w in ways if not w[2] or w[0] == "stream"]
    for transport, encoding, label, server_url, meter in ways:
        with (
            _client_polling(label != BLOCKING),
            RemoteEnv(server_url, ENV_NAME, api_key, encoding=encoding, transport=transport) as env,
        ):
            name = f"{transport} {encoding}{label} single env"
            best(single, env, meter, name, local_single)
    local = gymnasium.make_vec(ENV_NAME, num_envs=num_envs, vectorization_mode="sync")
    best(vector, local, local_meter, local_vector, None)
    local.close()
    for transport, encoding, label, server_url, meter in ways:
        with (
            _client_polling(label != BLOCKING),
            RemoteVectorEnv(
                server_url, ENV_NAME, num_envs, api_key, encoding=encoding, transport=transport
            ) as env,
        ):
            name = f"{transport} {encoding}{label} {num_envs}-env vector"
            best(vector, env, meter, name, local_vector)
    return results


#: The label of the measurements where neither end busy-polls.
BLOCKING = " inline, no polling"


@contextlib.contextmanager
def _client_polling(on: bool) -> Iterator[None]:
    """Clients made inside poll for answers as by default, or (``on=False``) never."""
    saved = os.environ.get(LIMIT_ENV)
    if not on:
        os.environ[LIMIT_ENV] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(LIMIT_ENV, None)
        else:
            os.environ[LIMIT_ENV] = saved


#: The ways a remote env is measured: (transport, encoding).
WAYS = (("http", "json"), ("http", "msgpack"), ("stream", "msgpack"))


def format_table(results: list[Result]) -> str:
    by_name = {r.name: r for r in results}
    width = max(len(r.name) for r in results)

    def us(value: float | None) -> str:
        return "" if value is None else f"{value:,.1f}"

    ceiling, polled = by_name.get(CEILING), by_name.get(POLLED_CEILING)
    lines = [
        f"| {'measurement':<{width}} | env-steps/s | vs. local | vs. TCP ceiling"
        " | vs. polled TCP | client CPU µs/step | server CPU µs/step |",
        f"|{'-' * (width + 2)}|------------:|----------:|----------------:"
        "|---------------:|-------------------:|-------------------:|",
    ]
    for r in results:
        ratio = (
            "" if r.baseline is None else f"{r.steps_per_s / by_name[r.baseline].steps_per_s:.3f}"
        )
        of_ceiling = of_polled = ""
        if "single" in r.name and r.baseline is not None:
            if ceiling is not None:
                of_ceiling = f"{r.steps_per_s / ceiling.steps_per_s:.3f}"
            if polled is not None:
                of_polled = f"{r.steps_per_s / polled.steps_per_s:.3f}"
        lines.append(
            f"| {r.name:<{width}} | {r.steps_per_s:>11,.0f} | {ratio:>9} | {of_ceiling:>15} "
            f"| {of_polled:>14} | {us(r.client_us):>18} | {us(r.server_us):>18} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="single-env steps per measurement")
    parser.add_argument("--iterations", type=int, default=200, help="vector steps per measurement")
    parser.add_argument("--num-envs", type=int, default=64, help="sub-envs of the vector env")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per measurement (best kept)"
    )
    parser.add_argument("--url", help="measure this running server instead of starting one")
    parser.add_argument("--api-key", help="key for --url (a started server gets a random one)")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.url:
        results = run(
            args.url, args.api_key, None, args.steps, args.iterations, args.num_envs, args.repeat
        )
    else:
        key = secrets.token_hex(16)
        with (
            server_process(key) as (url, pid),
            server_process(key, inline=True) as fast,
            server_process(key, inline=True, polling=False) as blocking,
        ):
            results = run(
                url,
                key,
                pid,
                args.steps,
                args.iterations,
                args.num_envs,
                args.repeat,
                fast,
                blocking,
            )
    print(f"{os.cpu_count()} CPU cores, 1-minute load average {load:.2f} at start")
    print(format_table(results))


if __name__ == "__main__":
    main()
