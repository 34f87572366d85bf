"""``agentgpt eval`` on a run whose env id is unknown where it evaluates.

A run trained on an env server's registered name (``agentgpt train corridor --env-url
...``) has an id that Gymnasium does not know on the training machine: eval says so in
one line instead of a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import agentgpt
from agentgpt.agent.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(agentgpt.__file__).resolve().parents[1]


def test_eval_of_an_env_unknown_here_is_one_line(tiny_run, tmp_path):
    run_dir = tmp_path / "corridor-run"
    shutil.copytree(tiny_run("CartPole-v1", 256), run_dir)
    state = load_checkpoint(run_dir)
    state["hyperparameters"]["env_id"] = "corridor"
    save_checkpoint(run_dir, state)

    result = subprocess.run(
        [sys.executable, "-m", "agentgpt", "eval", str(run_dir), "--episodes", "1"],
        cwd=REPO,  # so that '-m agentgpt' runs this checkout
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Cannot evaluate {run_dir}: Environment `corridor` doesn't exist.")
    assert line.endswith("its id must be registered with Gymnasium here.")
