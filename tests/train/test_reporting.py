"""The progress view's ETA: from the run's average speed, so it does not jump."""

from __future__ import annotations

from agentgpt.train.reporting import eta_text


def test_eta_is_the_remaining_steps_at_the_average_speed() -> None:
    assert eta_text(1_000, 100.0) == "0:00:10"
    assert eta_text(90_000, 25.0) == "1:00:00"
    assert eta_text(0, 50.0) == "0:00:00"
    assert eta_text(125, 100.0) == "0:00:01"  # rounded to the second


def test_eta_without_a_speed_yet_is_unknown() -> None:
    assert eta_text(1_000, 0.0) == "-:--:--"


def test_a_short_stall_moves_the_eta_little() -> None:
    """One slow update in a long run barely changes the average, hence the ETA."""
    total, done, elapsed = 100_000, 50_000, 100.0
    before = eta_text(total - done, done / elapsed)
    # The next 1,000 steps took 10 s instead of 2 s (the machine was busy for a moment).
    after = eta_text(total - done - 1_000, (done + 1_000) / (elapsed + 10.0))
    as_seconds = [
        sum(int(p) * f for p, f in zip(t.split(":"), (3600, 60, 1), strict=True))
        for t in (before, after)
    ]
    assert abs(as_seconds[1] - as_seconds[0]) <= 0.15 * as_seconds[0]
