"""Showing a study: one line per finished trial, the live table, the final summary."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from agentgpt.tune.objective import TuneSettings
from agentgpt.tune.study import StudySummary, summarize

__all__ = ["live_table", "print_summary", "trial_line", "trials_table"]

#: Short column names for the parameters of the default search space.
SHORT_NAMES = {
    "learning_rate": "lr",
    "target_entropy_start": "entropy",
    "ent_coef": "ent_coef",
    "clip_range": "clip",
    "gae_lambda": "lambda",
    "gamma": "gamma",
    "rollout_steps": "rollout",
    "num_input_states": "K",
    "d_model": "width",
}

_STATE_STYLE = {
    "COMPLETE": "green",
    "PRUNED": "yellow",
    "FAIL": "red",
    "RUNNING": "cyan",
    "WAITING": "magenta",
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{SHORT_NAMES.get(k, k)}={_fmt(v)}" for k, v in params.items())


def _last_report(trial: Any) -> tuple[int, float] | None:
    if not trial.intermediate_values:
        return None
    step = max(trial.intermediate_values)
    return step, trial.intermediate_values[step]


def _retry_of(trial: Any) -> int | None:
    return trial.system_attrs.get("failed_trial")


def trial_line(trial: Any) -> str:
    """One line for a trial that just ended."""
    state = trial.state.name.lower()
    parts = [f"trial {trial.number} {state}"]
    if trial.state.name == "COMPLETE":
        parts.append(f"return {trial.value:.2f}")
    elif trial.state.name == "PRUNED":
        last = _last_report(trial)
        if last is not None:
            parts.append(f"at step {last[0]} (return {last[1]:.2f})")
    elif "error" in trial.user_attrs:
        parts.append(trial.user_attrs["error"])
    retry = _retry_of(trial)
    if retry is not None:
        parts.append(f"retry of trial {retry}")
    return f"{', '.join(parts)}: {_params(trial.params)}"


def trials_table(study: Any, limit: int | None = 20) -> Group:
    """The study's trials (the last ``limit``, and the best one), with a header line."""
    trials = study.get_trials(deepcopy=False)
    summary = summarize_counts(trials)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: t.value) if complete else None
    shown = trials if limit is None else trials[-limit:]
    if best is not None and best not in shown:
        shown = [best, *shown]
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (
        ("trial", "right"),
        ("state", "left"),
        ("return", "right"),
        ("last report", "right"),
        ("worker", "left"),
        ("parameters", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=name != "parameters")
    for trial in shown:
        state = trial.state.name
        value = f"{trial.value:.2f}" if state == "COMPLETE" and trial.value is not None else ""
        last = _last_report(trial)
        report = f"{last[1]:.1f} @ {last[0]}" if last else ""
        number = f"{trial.number}*" if best is not None and trial is best else str(trial.number)
        retry = _retry_of(trial)
        label = state.lower() if retry is None else f"{state.lower()} (retry of {retry})"
        table.add_row(
            number,
            Text(label, style=_STATE_STYLE.get(state, "")),
            value,
            report,
            str(trial.user_attrs.get("host", "")),
            _params(trial.params),
        )
    header = Text(f"study {study.study_name}: {summary}")
    if best is not None:
        header.append(f"; best trial {best.number}: {best.value:.2f}", style="bold")
    return Group(header, table)


def summarize_counts(trials: list[Any]) -> str:
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    order = ("complete", "pruned", "running", "waiting", "fail")
    parts = [f"{counts[k]} {k if k != 'fail' else 'failed'}" for k in order if counts.get(k)]
    return ", ".join(parts) if parts else "no trials yet"


@contextlib.contextmanager
def live_table(settings: TuneSettings, console: Console | None = None) -> Iterator[None]:
    """Redraw the study's trial table every two seconds while the block runs (read from
    the storage, so trials of every worker, on every machine, appear)."""
    from rich.live import Live

    from agentgpt.tune.study import load_existing_study

    study = load_existing_study(settings.storage, settings.study)
    last: list[Any] = [Text("")]
    polled = [0.0]

    def render() -> Any:
        now = time.monotonic()
        if now - polled[0] >= 2.0:
            polled[0] = now
            # A busy database keeps the last table on screen.
            with contextlib.suppress(Exception):
                last[0] = trials_table(study, limit=15)
        return last[0]

    with Live(get_renderable=render, console=console, refresh_per_second=2) as live:
        try:
            yield
        finally:
            polled[0] = 0.0  # the final table shows how every trial ended
            live.refresh()
    live.console.print()


def print_summary(summary: StudySummary, console: Console, best_file: Any = None) -> None:
    """The best parameters, their return and the parameter importances."""
    counts = summary.counts
    console.print(
        f"Study {summary.name}: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
        f"{counts['FAIL']} failed, {counts['RUNNING']} running"
    )
    if summary.best_number is None:
        console.print("No trial has finished yet.")
        return
    console.print(
        f"Best trial {summary.best_number}: evaluation return {summary.best_value:.2f}",
        style="bold",
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("parameter")
    table.add_column("best value", justify="right")
    table.add_column("importance", justify="right")
    table.add_column("")
    importances = summary.importances or {}
    names = list(importances) + [k for k in summary.best_params if k not in importances]
    for name in names:
        if name not in summary.best_params:
            continue
        share = importances.get(name)
        bar = "#" * round(20 * share) if share is not None else ""
        table.add_row(
            name,
            _fmt(summary.best_params[name]),
            f"{share:.2f}" if share is not None else "",
            bar,
        )
    console.print(table)
    if summary.importances is None:
        console.print("(importances need at least two complete trials)")
    if best_file is not None:
        console.print(f"Best hyperparameters: {best_file}", soft_wrap=True)
        console.print(f"Train with them: agentgpt train --config {best_file}", soft_wrap=True)


def show(study: Any, console: Console) -> StudySummary:
    """``agentgpt tune --show``: every trial, then the summary."""
    console.print(trials_table(study, limit=None))
    summary = summarize(study)
    print_summary(summary, console)
    return summary
