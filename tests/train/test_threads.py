"""The update's thread count follows the cores other programs leave free."""

from __future__ import annotations

from pathlib import Path

from agentgpt.train.threads import free_cores


def _loadavg(path: Path, runnable: int) -> str:
    path.write_text(f"0.50 0.40 0.30 {runnable}/321 4242\n")
    return str(path)


def test_every_core_is_free_when_only_this_task_runs(tmp_path: Path) -> None:
    assert free_cores(2, loadavg_path=_loadavg(tmp_path / "loadavg", 1)) == 2
    assert free_cores(8, loadavg_path=_loadavg(tmp_path / "loadavg", 3)) == 6


def test_busy_cores_leave_at_least_one_thread(tmp_path: Path) -> None:
    assert free_cores(2, loadavg_path=_loadavg(tmp_path / "loadavg", 3)) == 1
    assert free_cores(2, loadavg_path=_loadavg(tmp_path / "loadavg", 40)) == 1


def test_unreadable_load_means_every_core(tmp_path: Path) -> None:
    assert free_cores(4, loadavg_path=str(tmp_path / "missing")) == 4
    (tmp_path / "garbled").write_text("not a loadavg line")
    assert free_cores(4, loadavg_path=str(tmp_path / "garbled")) == 4


def test_this_machine_answers_a_count_in_range() -> None:
    assert 1 <= free_cores(2, samples=2, interval=0.0) <= 2
