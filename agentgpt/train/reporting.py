"""Where training metrics go: ``metrics.csv``, TensorBoard, W&B and the live terminal view.

``metrics.csv`` holds only values that are a pure function of the seed (no wall-clock),
so two runs with the same seed produce byte-identical files; timings go to
``timing.csv``, TensorBoard and the progress display instead. :class:`Reporter` is a
training callback (:mod:`agentgpt.train.callbacks`) that ``train()`` adds to every run.
"""

from __future__ import annotations

import csv
import sys
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from agentgpt.train.callbacks import Callback, EvaluationEvent, UpdateEvent

METRIC_COLUMNS = [
    "update",
    "global_step",
    "episodes",
    "mean_return",
    "mean_length",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "epochs",
    "learning_rate",
    "ent_coef",
    "target_entropy",
]
#: ``policy_lag``: updates between acting and training, averaged over the rollout;
#: ``hosts_up``: filled when the envs run on env hosts.
TIMING_COLUMNS = [
    "update",
    "global_step",
    "wall_time_s",
    "steps_per_sec",
    "policy_lag",
    "hosts_up",
]


def _rewrite_up_to(path: Path, columns: list[str], last_update: int) -> None:
    """Keep the header and rows with ``update <= last_update`` (a resumed run drops rows
    written after its checkpoint)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["update"]) <= last_update]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


class CsvLog:
    def __init__(self, path: Path, columns: list[str], resume_update: int | None) -> None:
        self.path = path
        self.columns = columns
        if resume_update is not None and path.exists():
            _rewrite_up_to(path, columns, resume_update)
        else:
            with path.open("w", newline="") as f:
                csv.DictWriter(f, fieldnames=columns).writeheader()

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow(
                {c: row.get(c, "") for c in self.columns}
            )


class Reporter(Callback):
    """Fans each update's metrics out to every sink (a callback of every run)."""

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int,
        resume_update: int | None,
        config: dict[str, Any],
        use_wandb: bool,
        wandb_project: str,
        show_progress: bool | None,
    ) -> None:
        self.metrics = CsvLog(run_dir / "metrics.csv", METRIC_COLUMNS, resume_update)
        self.timing = CsvLog(run_dir / "timing.csv", TIMING_COLUMNS, resume_update)
        from torch.utils.tensorboard import SummaryWriter

        self.tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.wandb_run = None
        if use_wandb:
            try:
                import wandb
            except ImportError:
                warnings.warn(
                    "--wandb was given but the wandb package is not installed "
                    "(pip install 'agentgpt[wandb]'); logging to TensorBoard only",
                    stacklevel=2,
                )
            else:
                self.wandb_run = wandb.init(
                    project=wandb_project, name=run_dir.name, config=config, dir=str(run_dir)
                )
        if show_progress is None:
            show_progress = sys.stdout.isatty()
        self.total_steps = total_steps
        self.progress: Progress | None = None
        if show_progress:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TextColumn("{task.fields[sps]:>7.0f} steps/s"),
                TextColumn("return {task.fields[ret]}"),
                TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"),
                console=Console(),
            )
            self.task = self.progress.add_task(
                run_dir.name,
                total=total_steps,
                completed=start_step,
                sps=0.0,
                ret="-",
                eta="-:--:--",
            )
            self.progress.start()

    def on_update(self, event: UpdateEvent) -> None:
        self.log(event.row, event.timing)

    def on_evaluation(self, event: EvaluationEvent) -> None:
        if event.result is None:
            return
        step = event.global_step
        self.tensorboard.add_scalar("eval/mean_return", event.result.mean, step)
        self.tensorboard.add_scalar("eval/std_return", event.result.std, step)
        if self.wandb_run is not None:
            self.wandb_run.log(
                {"eval/mean_return": event.result.mean, "eval/std_return": event.result.std},
                step=step,
            )

    def on_end(self) -> None:
        self.close()

    def log(self, row: dict[str, Any], timing: dict[str, Any]) -> None:
        self.metrics.write(row)
        self.timing.write(timing)
        step = int(row["global_step"])
        for key, value in {**row, **timing}.items():
            if key in ("update", "global_step") or value is None or value == "":
                continue
            self.tensorboard.add_scalar(f"train/{key}", float(value), step)
        if self.wandb_run is not None:
            self.wandb_run.log({**row, **timing}, step=step)
        if self.progress is not None:
            ret = row.get("mean_return")
            shown = "-" if ret in (None, "") else f"{float(ret):.1f}"
            sps = float(timing["steps_per_sec"])
            eta = eta_text(self.total_steps - step, sps)
            self.progress.update(self.task, completed=step, sps=sps, ret=shown, eta=eta)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.tensorboard.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def eta_text(remaining_steps: int, steps_per_sec: float) -> str:
    """Time left as ``H:MM:SS`` at the run's average speed since it started.

    Updates arrive seconds apart, and a speed measured over the last few of them swings
    with every pause of the machine (an ETA that jumps between 5 and 15 minutes). The
    average over the whole run moves slowly, so the ETA shown is stable; it still follows
    a lasting change of speed.
    """
    if steps_per_sec <= 0 or remaining_steps < 0:
        return "-:--:--"
    seconds = round(remaining_steps / steps_per_sec)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
