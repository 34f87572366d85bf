"""Which optional extra provides which module, and the one line that says what to install.

The core install serves and reaches envs; training, ONNX export and videos need extras
(pyproject.toml's ``[project.optional-dependencies]``). A command calls :func:`require`
with the modules it is about to import, before any heavy work, so a missing extra ends
it with one line naming the exact ``pip install`` command instead of a traceback.
"""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import typer

__all__ = ["EXIT_MISSING_EXTRA", "PROVIDED_BY", "install_command", "require", "source_checkout"]

#: The extra that installs each module a command may need. The one place that knows it.
PROVIDED_BY: dict[str, str] = {
    "torch": "train",
    "tensorboard": "train",
    "onnx": "onnx",
    "imageio": "video",
    "imageio_ffmpeg": "video",
    "optuna": "tune",
    "boto3": "cloud",
}

#: Exit status of a command stopped by a missing extra.
EXIT_MISSING_EXTRA = 1

# The extras in the order pyproject.toml lists them (and PROVIDED_BY names them), so a
# command line reads the same way.
_EXTRA_ORDER = tuple(dict.fromkeys(PROVIDED_BY.values()))


def source_checkout() -> Path | None:
    """The repository root when ``agentgpt`` runs from a source checkout, else None.

    A checkout installs with its ``constraints.txt`` (the versions CI uses); an install
    from a package index has neither file next to the package.
    """
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "constraints.txt").is_file():
        return root
    return None


def install_command(extras: list[str], checkout: Path | None, cwd: Path) -> str:
    """The ``pip install`` command that adds ``extras``.

    From a package index: ``pip install "agentgpt[onnx]"``. From a source checkout: the
    editable install held to ``constraints.txt``, with relative paths when run from the
    checkout's root and absolute ones anywhere else.
    """
    names = ",".join(sorted(extras, key=_EXTRA_ORDER.index))
    if checkout is None:
        return f'pip install "agentgpt[{names}]"'
    if cwd.resolve() == checkout.resolve():
        return f'pip install -c constraints.txt -e ".[{names}]"'
    constraints = shlex.quote(str(checkout / "constraints.txt"))
    return f"pip install -c {constraints} -e {shlex.quote(f'{checkout}[{names}]')}"


def require(command: str, *modules: str) -> None:
    """Import ``modules`` (keys of :data:`PROVIDED_BY`) or stop ``agentgpt COMMAND``.

    When one is not installed, prints one line on stderr (what is missing and the exact
    install command) and exits with :data:`EXIT_MISSING_EXTRA`. Only the absence of the
    named module itself counts: a module that is installed but fails to import is a
    broken install, and its error propagates unchanged.
    """
    missing: list[str] = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            missing.append(module)
    if not missing:
        return
    extras = sorted({PROVIDED_BY[module] for module in missing}, key=_EXTRA_ORDER.index)
    what = f"the {extras[0]} extra" if len(extras) == 1 else f"the {' and '.join(extras)} extras"
    typer.echo(
        f"agentgpt {command} needs {what} (not installed: {', '.join(missing)}). Install"
        f" with: {install_command(extras, source_checkout(), Path.cwd())}",
        err=True,
    )
    raise typer.Exit(EXIT_MISSING_EXTRA)
