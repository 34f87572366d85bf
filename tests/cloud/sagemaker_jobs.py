"""What SageMaker writes under ``/opt/ml/input/config`` before ``train`` starts, for the
tests that run the container's entrypoint as a real process."""

from __future__ import annotations

import json
from pathlib import Path

#: The smallest job that still trains for real: a few seconds of CartPole on one core.
#: SageMaker's HyperParameters map holds strings only.
TINY = {
    "env_id": "CartPole-v1",
    "seed": "3",
    "total_steps": "512",
    "num_envs": "4",
    "rollout_steps": "16",
    "num_layers": "1",
    "d_model": "32",
    "num_heads": "2",
    "max_input_states": "4",
    "num_input_states": "4",
    "epochs": "2",
}


def write_job(
    root: Path,
    hyperparameters: dict[str, str],
    hosts: list[str] | None = None,
    current: str = "algo-1",
    interface: str = "eth0",
) -> None:
    """``hyperparameters.json`` (every value a string, as SageMaker writes it) and the
    instance's ``resourceconfig.json`` under ``root``; an existing job is overwritten."""
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    assert all(isinstance(v, str) for v in hyperparameters.values())
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    resources = {
        "current_host": current,
        "hosts": hosts or [current],
        "network_interface_name": interface,
    }
    (config / "resourceconfig.json").write_text(json.dumps(resources))
