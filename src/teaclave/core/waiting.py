"""How long to wait: pauses between attempts, and the bound of a call that waits.

The caller does the waiting (the core reads no clock).
"""

from __future__ import annotations


class Backoff:
    """``first``, then twice the previous pause, at most ``most`` seconds; :meth:`reset`
    after a success starts again from ``first``."""

    def __init__(self, first: float, most: float) -> None:
        self._first = first
        self._most = most
        self._next = first

    def pause(self) -> float:
        """The pause before the next attempt, in seconds."""
        pause = self._next
        self._next = min(pause * 2, self._most)
        return pause

    def reset(self) -> None:
        """The last attempt succeeded."""
        self._next = self._first


def wait_secs(timeout_ms: int, most: float, remaining: float | None, margin: float = 0.0) -> float:
    """How long a call that asks to wait ``timeout_ms`` may: at most ``most`` seconds, and
    until ``margin`` seconds before its caller's deadline (``remaining`` seconds away;
    None: no deadline), so that the answer arrives in time."""
    secs = min(timeout_ms / 1000, most)
    return secs if remaining is None else min(secs, remaining - margin)
