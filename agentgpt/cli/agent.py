"""``agentgpt eval`` and ``agentgpt export``: use a trained run directory.

Both load the agent inside the command, so importing this module (which ``agentgpt
--help`` does) never imports torch; each first checks that its extras are installed
(``agentgpt.cli.extras``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agentgpt.cli.extras import require

__all__ = ["register", "eval_command", "export_command"]

_RunDir = Annotated[
    Path,
    typer.Argument(
        help="Run directory written by 'agentgpt train' (holds checkpoint.pt).",
        exists=True,
        file_okay=False,
        dir_okay=True,
    ),
]


def eval_command(
    run_dir: _RunDir,
    episodes: Annotated[int, typer.Option(help="Episodes to play.", min=1)] = 20,
    video: Annotated[
        Path | None,
        typer.Option(help="Also render every episode to this .mp4 or .gif file."),
    ] = None,
    control: Annotated[
        float,
        typer.Option(help="Control value: 0.0 plays randomly, 1.0 at full skill.", min=0, max=1),
    ] = 1.0,
    num_input_states: Annotated[
        int | None,
        typer.Option(help="Context length K to act with (default: the trained K).", min=1),
    ] = None,
    seed: Annotated[int, typer.Option(help="Episode i is reset with seed + i.")] = 0,
    stochastic: Annotated[
        bool, typer.Option("--stochastic", help="Sample actions instead of taking the mode.")
    ] = False,
    policy_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Take actions from the policy served at this URL (agentgpt serve) instead of"
            " loading the checkpoint: checks that the deployed model scores what the run scores.",
        ),
    ] = None,
    policy_api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="Bearer key of the policy server (prefer the AGENTGPT_POLICY_API_KEY variable).",
            envvar="AGENTGPT_POLICY_API_KEY",
            show_envvar=False,
        ),
    ] = None,
    env_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Play on the env server at this URL instead of local envs (with --video:"
            " the server renders the frames).",
        ),
    ] = None,
    env_api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="Bearer key of the env server (prefer the AGENTGPT_API_KEY variable).",
            envvar="AGENTGPT_API_KEY",
            show_envvar=False,
        ),
    ] = None,
) -> None:
    """Play a trained agent and print the mean and std of its episode return (for a
    shipped multi-agent env, the team's return: the sum over its agents)."""
    if video is not None and video.suffix.lower() not in (".mp4", ".gif"):
        raise typer.BadParameter("must end with .mp4 or .gif", param_hint="--video")
    if policy_url is not None:
        if video is not None:
            raise typer.BadParameter("cannot be combined with --policy-url", param_hint="--video")
        _served_eval(
            run_dir,
            policy_url,
            policy_api_key,
            env_url,
            env_api_key,
            episodes=episodes,
            seed=seed,
            control=control,
            num_input_states=num_input_states,
            stochastic=stochastic,
        )
        return
    require("eval", "torch", *_video_modules(video))
    import gymnasium

    from agentgpt.agent.checkpoint import load_agent
    from agentgpt.agent.evaluate import evaluate
    from agentgpt.remote import RemoteEnvError

    if env_url is None and _team_eval(run_dir, episodes, seed, stochastic):
        return
    try:
        make_env = None
        target: Any = run_dir
        if env_url is not None:
            target = load_agent(run_dir)  # its env id and kwargs name the server's env
            make_env = _remote_envs(target.env, env_url, env_api_key)
        result = evaluate(
            target,
            episodes=episodes,
            seed=seed,
            control=control,
            num_input_states=num_input_states,
            deterministic=not stochastic,
            video=video,
            make_env=make_env,
        )
    except RemoteEnvError as exc:
        typer.echo(f"Cannot evaluate {run_dir} on {env_url}: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except gymnasium.error.UnregisteredEnv as exc:
        typer.echo(
            f"Cannot evaluate {run_dir}: {exc} Evaluation makes the run's env in this"
            " process, so its id must be registered with Gymnasium here.",
            err=True,
        )
        raise typer.Exit(code=2) from None
    except (FileNotFoundError, ValueError, gymnasium.error.Error) as exc:
        typer.echo(f"Cannot evaluate {run_dir}: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(
        f"mean return {result.mean:.2f} +/- {result.std:.2f} over {result.episodes} episodes"
    )
    if video is not None:
        typer.echo(f"video written to {video}")


def _remote_envs(spec: Any, env_url: str, api_key: str | None) -> Any:
    """``make_env`` for :func:`~agentgpt.agent.evaluate.evaluate`: the run's env (``spec``:
    its id and kwargs) made on the env server at ``env_url``."""
    from agentgpt.remote import RemoteEnv

    def make_env(render_mode: str | None) -> Any:
        return RemoteEnv(
            env_url,
            spec.env_id,
            api_key,
            env_kwargs=dict(spec.env_kwargs) or None,
            render_mode=render_mode,
        )

    return make_env


def _served_eval(
    run_dir: Path,
    policy_url: str,
    policy_api_key: str | None,
    env_url: str | None,
    env_api_key: str | None,
    *,
    episodes: int,
    seed: int,
    control: float,
    num_input_states: int | None,
    stochastic: bool,
) -> None:
    """``eval --policy-url``: the run's env, played with a served policy (no torch here)."""
    from agentgpt.remote.errors import RemoteEnvError
    from agentgpt.serve.evaluate import evaluate_served

    try:
        result = evaluate_served(
            run_dir,
            policy_url,
            api_key=policy_api_key,
            episodes=episodes,
            seed=seed,
            control=None if control == 1.0 else control,
            num_input_states=num_input_states,
            deterministic=not stochastic,
            env_url=env_url,
            env_api_key=env_api_key,
        )
    except (FileNotFoundError, ValueError, RemoteEnvError) as exc:
        typer.echo(f"Cannot evaluate {run_dir} with {policy_url}: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(
        f"mean return {result.mean:.2f} +/- {result.std:.2f} over {result.episodes} episodes"
        f" (actions from {policy_url})"
    )


def _video_modules(video: Path | None) -> tuple[str, ...]:
    """What writing ``video`` imports: imageio, and its ffmpeg binary for an .mp4."""
    if video is None:
        return ()
    if video.suffix.lower() == ".mp4":
        return ("imageio", "imageio_ffmpeg")
    return ("imageio",)


def _team_eval(run_dir: Path, episodes: int, seed: int, stochastic: bool) -> bool:
    """Evaluate a run of a shipped PettingZoo env locally; False for any other run."""
    from agentgpt.envs import PETTINGZOO_ENVS
    from agentgpt.train.hyperparameters import Hyperparameters

    saved = run_dir / "hyperparameters.yaml"
    if not saved.exists():
        return False
    hp = Hyperparameters.from_yaml(saved)
    factory = PETTINGZOO_ENVS.get(hp.env_id)
    if factory is None:
        return False
    from agentgpt.agent.team_eval import evaluate_team
    from agentgpt.core.factories import load_factory

    env = load_factory(factory)(**hp.env_kwargs)
    try:
        result = evaluate_team(run_dir, env, episodes, seed=seed, deterministic=not stochastic)
    finally:
        env.close()
    typer.echo(
        f"mean team return {result.mean:.2f} +/- {result.std:.2f} over {result.episodes} episodes"
    )
    return True


def export_command(
    run_dir: _RunDir,
    onnx: Annotated[Path, typer.Option("--onnx", help="Path of the ONNX file to write.")],
    num_input_states: Annotated[
        int | None,
        typer.Option(help="Window length K of the graph (default: the trained K).", min=1),
    ] = None,
    with_log_probs: Annotated[
        bool,
        typer.Option(
            "--with-log-probs",
            help="Add a log_probs output for discrete actions (to sample or mask in-engine).",
        ),
    ] = False,
) -> None:
    """Export a trained agent to ONNX (see docs/onnx.md for feeding it)."""
    require("export", "torch", "onnx")
    from agentgpt.agent.export import export_onnx

    try:
        path = export_onnx(
            run_dir, onnx, num_input_states=num_input_states, with_log_probs=with_log_probs
        )
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"Cannot export {run_dir}: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"ONNX model written to {path}")


def register(app: typer.Typer) -> None:
    """Add the ``eval`` and ``export`` commands to the ``agentgpt`` CLI."""
    app.command("eval", no_args_is_help=True)(eval_command)
    app.command("export", no_args_is_help=True)(export_command)
