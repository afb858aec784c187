"""A per-user-id brake on password guessing (in memory, per process)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_FAILURES = 5
WINDOW_SECS = 60.0
LOCKOUT_SECS = 5.0
MAX_TRACKED = 10_000


class LoginThrottle:
    """After ``max_failures`` failed logins of one id within ``window`` seconds,
    refuse that id for ``lockout`` seconds."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECS,
        lockout: float = LOCKOUT_SECS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._window = window
        self._lockout = lockout
        self._clock = clock
        self._lock = threading.Lock()
        # user id -> (times of recent failures, locked until)
        self._state: OrderedDict[str, tuple[list[float], float]] = OrderedDict()

    def allowed(self, user_id: str) -> bool:
        """Whether a login attempt for ``user_id`` may be checked now."""
        with self._lock:
            state = self._state.get(user_id)
            return state is None or state[1] <= self._clock()

    def failed(self, user_id: str) -> None:
        """Record a failed attempt."""
        now = self._clock()
        with self._lock:
            failures, _ = self._state.pop(user_id, ([], 0.0))
            failures = [t for t in failures if now - t < self._window] + [now]
            locked_until = 0.0
            if len(failures) >= self._max:
                failures, locked_until = [], now + self._lockout
            self._state[user_id] = (failures, locked_until)
            if len(self._state) > MAX_TRACKED:
                self._state.popitem(last=False)

    def succeeded(self, user_id: str) -> None:
        """Forget the failures of ``user_id``."""
        with self._lock:
            self._state.pop(user_id, None)
