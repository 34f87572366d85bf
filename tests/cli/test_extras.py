"""A command whose extra is missing says, in one line, which ``pip install`` to run.

Each case runs the real CLI in a fresh interpreter where the extra's module cannot be
imported (``sys.modules[name] = None``, what Python reports as "not installed").
"""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import agentgpt
from agentgpt.cli.extras import EXIT_MISSING_EXTRA, PROVIDED_BY, install_command

REPO = Path(agentgpt.__file__).resolve().parents[1]


def _run_cli(
    args: list[str], hidden: list[str], cwd: Path, pythonpath: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess:
    """``agentgpt ARGS`` with the modules in ``hidden`` made unimportable."""
    code = (
        "import sys\n"
        f"for name in {hidden!r}:\n"
        "    sys.modules[name] = None\n"
        "from agentgpt.cli import main\n"
        f"sys.argv = ['agentgpt', *{args!r}]\n"
        "main()\n"
    )
    path = [*map(str, pythonpath), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory: the checks come before anything is loaded from it."""
    path = tmp_path / "runs" / "my-run"
    path.mkdir(parents=True)
    return path


CASES = [
    # (command line after 'agentgpt', hidden modules, extras named, modules named)
    (["train", "CartPole-v1"], ["torch"], "the train extra", "torch", "train"),
    (["train", "CartPole-v1"], ["tensorboard"], "the train extra", "tensorboard", "train"),
    (["eval", "{run}"], ["torch"], "the train extra", "torch", "train"),
    (
        ["eval", "{run}", "--video", "out.mp4"],
        ["imageio_ffmpeg"],
        "the video extra",
        "imageio_ffmpeg",
        "video",
    ),
    (
        ["eval", "{run}", "--video", "out.gif"],
        ["torch", "imageio"],
        "the train and video extras",
        "torch, imageio",
        "train,video",
    ),
    (["export", "{run}", "--onnx", "agent.onnx"], ["onnx"], "the onnx extra", "onnx", "onnx"),
    (
        ["export", "{run}", "--onnx", "agent.onnx"],
        ["onnx", "torch"],
        "the train and onnx extras",
        "torch, onnx",
        "train,onnx",
    ),
]


@pytest.mark.parametrize(("args", "hidden", "what", "modules", "extras"), CASES)
def test_missing_extra_is_one_line_with_the_install_command(
    run_dir, args, hidden, what, modules, extras
):
    args = [arg.format(run=run_dir) for arg in args]
    result = _run_cli(args, hidden, cwd=REPO)

    command = args[0]
    assert result.returncode == EXIT_MISSING_EXTRA
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"agentgpt {command} needs {what} (not installed: {modules}). Install with:"
        f' pip install -c constraints.txt -e ".[{extras}]"'
    ]
    assert not (REPO / "agent.onnx").exists()
    assert not (REPO / "out.mp4").exists()


def test_outside_the_checkout_the_command_names_its_files(run_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run_cli(["export", str(run_dir), "--onnx", "agent.onnx"], ["onnx"], elsewhere)

    assert result.returncode == EXIT_MISSING_EXTRA
    constraints = shlex.quote(str(REPO / "constraints.txt"))
    editable = shlex.quote(f"{REPO}[onnx]")
    assert result.stderr.splitlines() == [
        "agentgpt export needs the onnx extra (not installed: onnx). Install with:"
        f" pip install -c {constraints} -e {editable}"
    ]


def test_a_broken_install_is_not_reported_as_a_missing_extra(run_dir, tmp_path):
    # onnx is present but one of its own imports is missing: reinstalling the extra is not
    # the answer, and the traceback is what finds the cause.
    stub = tmp_path / "stubs" / "onnx"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("import agentgpt_test_missing_onnx_dependency\n")
    result = _run_cli(
        ["export", str(run_dir), "--onnx", "agent.onnx"], [], REPO, pythonpath=(stub.parent,)
    )

    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "No module named 'agentgpt_test_missing_onnx_dependency'" in result.stderr
    assert "needs the onnx extra" not in result.stderr


def test_with_the_extras_installed_the_command_goes_on(run_dir):
    # Every module is importable here, so export gets as far as reading the run.
    result = _run_cli(["export", str(run_dir), "--onnx", "agent.onnx"], [], REPO)

    assert result.returncode == 2
    assert "needs the" not in result.stderr
    assert f"Cannot export {run_dir}" in result.stderr


def test_install_command_forms(tmp_path):
    checkout = tmp_path / "agentgpt-src"
    checkout.mkdir()
    assert install_command(["video", "train"], None, tmp_path) == (
        'pip install "agentgpt[train,video]"'
    )
    assert install_command(["onnx"], checkout, checkout) == (
        'pip install -c constraints.txt -e ".[onnx]"'
    )
    assert install_command(["onnx"], checkout, tmp_path) == (
        f"pip install -c {checkout}/constraints.txt -e '{checkout}[onnx]'"
    )


def _distributions(extra: str, declared: dict[str, list[str]]) -> set[str]:
    """Distributions an extra installs, following ``agentgpt[...]`` references."""
    names = set()
    for spec in declared[extra]:
        requirement = Requirement(spec)
        if requirement.name == "agentgpt":
            for inner in requirement.extras:
                names |= _distributions(inner, declared)
        else:
            names.add(canonicalize_name(requirement.name))
    return names


def test_each_module_comes_with_the_extra_named_for_it():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["optional-dependencies"]
    providers = importlib.metadata.packages_distributions()
    for module, extra in PROVIDED_BY.items():
        dists = {canonicalize_name(name) for name in providers[module]}
        assert dists & _distributions(extra, declared), (module, extra)
    # Whoever trains can export: the train extra brings the onnx extra.
    assert _distributions("onnx", declared) <= _distributions("train", declared)
