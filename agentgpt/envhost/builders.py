"""Building envs for ``/make`` and ``/make_vec`` and wrapping them in adapters.

Runs in a worker thread: constructing an env may import modules, load assets or (for async
vector envs) start processes. Any exception from env code surfaces as ``env_error``.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import gymnasium

from agentgpt.envhost import errors
from agentgpt.envhost.adapters import (
    EnvAdapter,
    MultiAgentAdapter,
    SingleEnvAdapter,
    VectorEnvAdapter,
)
from agentgpt.envhost.registry import EnvSource
from agentgpt.envhost.unity.adapter import UnityAdapter, is_unity_env
from agentgpt.envhost.unity.launch import UnityLauncher
from agentgpt.protocol.autoreset import autoreset_mode_from_wire
from agentgpt.protocol.requests import MakeRequest, MakeVecRequest

__all__ = ["build_single", "build_vector", "is_multi_agent"]


def is_multi_agent(env: Any) -> bool:
    """Whether ``env`` is a PettingZoo env (parallel or AEC)."""
    from pettingzoo import AECEnv, ParallelEnv

    return isinstance(env, ParallelEnv | AECEnv)


def _as_parallel(env: Any) -> Any:
    from pettingzoo import AECEnv
    from pettingzoo.utils.conversions import aec_to_parallel

    if isinstance(env, AECEnv):
        return aec_to_parallel(env)
    return env


def _env_kwargs(kwargs: dict[str, Any], render_mode: str | None) -> dict[str, Any]:
    if render_mode is None:
        return dict(kwargs)
    return {**kwargs, "render_mode": render_mode}


def _close_quietly(env: Any) -> None:
    with contextlib.suppress(Exception):
        env.close()


def _adapt_or_close(env: Any, build: Any) -> EnvAdapter:
    """Wrap ``env``; if wrapping fails (e.g. an unsupported space), close it first."""
    try:
        return build()
    except BaseException:
        _close_quietly(env)
        raise


def build_single(source: EnvSource, request: MakeRequest) -> EnvAdapter:
    """A single-agent or multi-agent env behind its adapter, as ``/make`` asked."""
    env_kwargs = _env_kwargs(request.kwargs, request.render_mode)
    autoreset_mode, seed = request.autoreset_mode, request.seed
    try:
        if isinstance(source.factory, UnityLauncher):
            env = source.factory.launch(env_kwargs, seed)
        elif source.factory is not None:
            env = source.factory(**env_kwargs)
        else:
            env = gymnasium.make(source.name, **env_kwargs)
    except errors.ApiError:
        raise
    except Exception as exc:
        raise errors.env_error(exc) from exc
    if is_unity_env(env):
        # A Unity build or editor, or a factory that returned an ML-Agents env.
        return _adapt_or_close(env, lambda: UnityAdapter(env, autoreset_mode, seed))
    if is_multi_agent(env):
        try:
            parallel = _as_parallel(env)
        except Exception as exc:
            _close_quietly(env)
            raise errors.env_error(exc) from exc
        return _adapt_or_close(parallel, lambda: MultiAgentAdapter(parallel, autoreset_mode, seed))
    if not isinstance(env, gymnasium.Env):
        _close_quietly(env)
        raise errors.env_error(
            TypeError(
                f"the factory for {source.name!r} returned {type(env).__name__}, not a"
                " gymnasium.Env or a PettingZoo env"
            )
        )
    return _adapt_or_close(env, lambda: SingleEnvAdapter(env, autoreset_mode, seed))


def build_vector(source: EnvSource, request: MakeVecRequest) -> EnvAdapter:
    """A Gymnasium vector env of ``num_envs`` copies behind its adapter, as ``/make_vec``
    asked."""
    env_kwargs = _env_kwargs(request.kwargs, request.render_mode)
    num_envs, vectorization_mode = request.num_envs, request.vectorization_mode
    mode = autoreset_mode_from_wire(request.autoreset_mode)
    if isinstance(source.factory, UnityLauncher):
        raise errors.invalid_argument(
            f"{source.name!r} is a Unity env, served as a multi-agent env; multi-agent envs"
            " cannot be vectorized (use /make: each env gets its own Unity instance)"
        )
    try:
        if source.factory is None:
            venv = gymnasium.make_vec(
                source.name,
                num_envs=num_envs,
                vectorization_mode=vectorization_mode,
                vector_kwargs={"autoreset_mode": mode},
                **env_kwargs,
            )
        else:
            venv = _build_registered_vector(source, num_envs, vectorization_mode, env_kwargs, mode)
    except errors.ApiError:
        raise
    except Exception as exc:
        raise errors.env_error(exc) from exc
    return _adapt_or_close(
        venv, lambda: VectorEnvAdapter(venv, request.autoreset_mode, request.seed)
    )


def _build_registered_vector(
    source: EnvSource,
    num_envs: int,
    vectorization_mode: str,
    env_kwargs: dict[str, Any],
    mode: Any,
) -> gymnasium.vector.VectorEnv:
    factory = functools.partial(source.factory, **env_kwargs)
    # Build the first copy here to learn what the factory makes: a PettingZoo env cannot be
    # vectorized, and that deserves a 422 rather than an error from deep inside Gymnasium.
    first = factory()
    if is_multi_agent(first) or is_unity_env(first):
        _close_quietly(first)
        raise errors.invalid_argument(
            f"{source.name!r} is a multi-agent env; multi-agent envs cannot be vectorized"
            " (use /make)"
        )
    if vectorization_mode == "sync":
        fns = [lambda: first] + [factory] * (num_envs - 1)
        return gymnasium.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    _close_quietly(first)
    return gymnasium.vector.AsyncVectorEnv([factory] * num_envs, autoreset_mode=mode)
