"""The ``agentgpt`` command line.

Each part of the product contributes its own commands from a ``commands`` module in its
package, so this file only assembles them. Heavy imports (torch, uvicorn) stay inside the
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
    from agentgpt.envhost import commands as envhost_commands

    envhost_commands.register(app)
    # The trainer's commands import torch lazily, inside each command, so registering
    # them is cheap and works without the [train] extra.
    from agentgpt.train import agent_commands
    from agentgpt.train import commands as train_commands

    train_commands.register(app)
    agent_commands.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
