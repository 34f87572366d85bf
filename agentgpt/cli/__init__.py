"""The ``agentgpt`` command line.

Each face of the product has its own module here (``envhost``, ``train``, ``agent``),
so this file only assembles them. Heavy imports (torch, uvicorn) stay inside the
command functions: ``agentgpt --help`` must be instant on a machine without torch.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="agentgpt",
    help="Reinforcement learning with environments that run anywhere.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    # Each module imports its heavy dependencies (torch, uvicorn) inside its commands, so
    # registering them is cheap and works without the [train] extra.
    from agentgpt.cli import agent, cloud, envhost, hosts, sagemaker, serve, train, tune

    envhost.register(app)
    hosts.register(app)
    train.register(app)
    tune.register(app)
    agent.register(app)
    serve.register(app)
    cloud.register(app)
    sagemaker.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
