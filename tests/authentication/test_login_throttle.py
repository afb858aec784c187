"""The per-id login throttle, on a hand-driven clock."""

from teaclave.services.authentication.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_locks_after_repeated_failures_then_recovers() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window=60, lockout=5, clock=clock)
    for _ in range(2):
        throttle.failed("eve")
    assert throttle.allowed("eve")
    throttle.failed("eve")
    assert not throttle.allowed("eve")
    assert throttle.allowed("alice")
    clock.now += 5
    assert throttle.allowed("eve")


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window=60, lockout=5, clock=clock)
    throttle.failed("bob")
    throttle.failed("bob")
    clock.now += 61
    throttle.failed("bob")
    assert throttle.allowed("bob")


def test_success_forgets_failures() -> None:
    throttle = LoginThrottle(max_failures=2, clock=Clock())
    throttle.failed("carol")
    throttle.succeeded("carol")
    throttle.failed("carol")
    assert throttle.allowed("carol")
