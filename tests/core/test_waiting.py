"""Pauses between attempts, and how long a call that waits may wait."""

import pytest

from teaclave.core.waiting import Backoff, wait_secs


def test_backoff_doubles_to_its_ceiling_and_resets() -> None:
    retry = Backoff(0.05, 0.3)
    assert [retry.pause() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    retry.reset()
    assert retry.pause() == 0.05


def test_a_wait_is_bounded_by_the_limit_and_the_callers_deadline() -> None:
    assert wait_secs(5_000, 60, None) == 5.0
    assert wait_secs(120_000, 60, None) == 60.0
    assert wait_secs(5_000, 60, 3.0) == 3.0
    assert wait_secs(5_000, 60, 3.0, margin=1.0) == pytest.approx(2.0)
    assert wait_secs(5_000, 60, 0.5, margin=1.0) < 0  # no time left: answer at once
    assert wait_secs(0, 60, None) == 0.0
