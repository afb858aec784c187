"""Waiting for something to happen, with a timeout that is not a duration bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], what: str, timeout: float = 30.0, poll: float = 0.05
) -> T:
    """``condition()``'s first true value; AssertionError naming ``what`` if it never comes.

    The timeout only keeps a broken test from hanging: it asserts nothing about how
    long the awaited thing takes.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)
    return value
