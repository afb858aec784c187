"""The login throttle on a hand-driven clock: budgets, back-off, addresses, memory."""

from __future__ import annotations

import logging

import pytest

from teaclave.services.authentication.throttle import (
    ACCOUNT,
    ADDRESS,
    Budget,
    LoginThrottle,
    address_key,
)

HOME, AWAY = "10.0.0.1", "10.0.0.2"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SMALL = Budget(2, 10.0, 40.0, 1000.0)
"""Two failures a round; lockouts of 10, 20, 40, 40 ... s; forgotten after 1000 quiet s."""
LARGE = Budget(100, 10.0, 40.0, 1000.0)


def throttle(
    clock: Clock, account: Budget = SMALL, address: Budget = LARGE, max_tracked: int = 100
) -> LoginThrottle:
    return LoginThrottle(account=account, address=address, clock=clock, max_tracked=max_tracked)


def fail(brake: LoginThrottle, user: str, address: str = HOME) -> None:
    attempt = brake.reserve(user, address)
    assert attempt is not None
    with attempt:
        attempt.failed()


def succeed(brake: LoginThrottle, user: str, address: str = HOME) -> None:
    attempt = brake.reserve(user, address)
    assert attempt is not None
    with attempt:
        attempt.succeeded()


def allowed(brake: LoginThrottle, user: str, address: str = HOME) -> bool:
    """Whether an attempt may start now (the probe gives its reservation back)."""
    attempt = brake.reserve(user, address)
    if attempt is None:
        return False
    with attempt:
        return True


def lockout(brake: LoginThrottle, clock: Clock, user: str, address: str = HOME) -> float:
    """How long ``user`` stays refused from now, probed in 1 s steps."""
    start = clock.now
    while not allowed(brake, user, address):
        clock.now += 1
    waited, clock.now = clock.now - start, start
    return waited


def test_defaults_are_stricter_than_before() -> None:
    assert (ACCOUNT.failures, ACCOUNT.lockout_secs, ACCOUNT.max_lockout_secs) == (5, 30, 3600)
    assert (ADDRESS.failures, ADDRESS.lockout_secs, ADDRESS.max_lockout_secs) == (20, 30, 3600)


def test_a_round_of_failures_locks_the_account() -> None:
    clock = Clock()
    brake = throttle(clock)
    fail(brake, "eve")
    assert allowed(brake, "eve")
    fail(brake, "eve")
    assert not allowed(brake, "eve")
    assert allowed(brake, "alice")
    assert lockout(brake, clock, "eve") == 10
    clock.now += 10
    assert allowed(brake, "eve")


def test_the_lockout_doubles_with_each_round_up_to_the_cap() -> None:
    clock = Clock()
    brake = throttle(clock)
    lockouts = []
    for _ in range(5):
        fail(brake, "eve")
        fail(brake, "eve")
        lockouts.append(lockout(brake, clock, "eve"))
        clock.now += lockouts[-1]
    assert lockouts == [10, 20, 40, 40, 40]


def test_budget_lockout_formula() -> None:
    budget = Budget(5, 30.0, 3600.0, 3600.0)
    assert [budget.lockout(n) for n in (1, 2, 3, 7, 8, 500)] == [30, 60, 120, 1920, 3600, 3600]


def test_success_clears_the_account_and_its_back_off() -> None:
    clock = Clock()
    brake = throttle(clock)
    for _ in range(2):  # two rounds: the next lockout would be 40 s
        fail(brake, "carol")
        fail(brake, "carol")
        clock.now += lockout(brake, clock, "carol")
    fail(brake, "carol")
    succeed(brake, "carol")
    fail(brake, "carol")
    assert allowed(brake, "carol")  # one failure since the success
    fail(brake, "carol")
    assert lockout(brake, clock, "carol") == 10  # back to the first lockout


def test_a_record_is_forgotten_after_a_quiet_period() -> None:
    clock = Clock()
    brake = throttle(clock)
    fail(brake, "bob")
    fail(brake, "bob")
    clock.now += 10 + 999
    fail(brake, "bob")
    fail(brake, "bob")
    assert lockout(brake, clock, "bob") == 20  # still the second round
    clock.now += 20 + 1000  # quiet for forget_secs after the lockout ended
    fail(brake, "bob")
    fail(brake, "bob")
    assert lockout(brake, clock, "bob") == 10


def test_pending_attempts_hold_the_budget() -> None:
    clock = Clock()
    brake = throttle(clock)
    first, second = brake.reserve("dave", HOME), brake.reserve("dave", AWAY)
    assert first is not None
    assert second is not None
    assert brake.reserve("dave", HOME) is None  # two undecided attempts use up the budget
    with first:
        pass  # undecided (e.g. storage was down): given back uncounted
    assert allowed(brake, "dave")
    with second:
        second.failed()
    assert allowed(brake, "dave")  # one failure so far
    fail(brake, "dave")
    assert not allowed(brake, "dave")


def test_an_address_is_limited_across_accounts() -> None:
    clock = Clock()
    brake = throttle(clock, address=Budget(3, 10.0, 40.0, 1000.0))
    for user in ("u1", "u2", "u3"):
        fail(brake, user, HOME)
    assert not allowed(brake, "u4", HOME)  # an account never tried before
    assert allowed(brake, "u1", AWAY)  # each account failed once only
    assert lockout(brake, clock, "u4", HOME) == 10


def test_a_success_does_not_clear_the_address() -> None:
    """Logging in to one's own account between guesses must not reset the count."""
    clock = Clock()
    brake = throttle(clock, address=Budget(3, 10.0, 40.0, 1000.0))
    fail(brake, "victim1", HOME)
    succeed(brake, "mallory", HOME)
    fail(brake, "victim2", HOME)
    succeed(brake, "mallory", HOME)
    assert allowed(brake, "victim3", HOME)  # the successes did not count against the address
    fail(brake, "victim3", HOME)
    assert not allowed(brake, "mallory", HOME)


def test_memory_is_bounded() -> None:
    clock = Clock()
    brake = throttle(clock, max_tracked=3)
    fail(brake, "a", "1.1.1.1")
    fail(brake, "a", "1.1.1.2")
    assert not allowed(brake, "a", "1.1.1.3")
    for user in ("b", "c", "d"):  # pushes the least recently used account out
        fail(brake, user, "1.1.1.4")
    assert allowed(brake, "a", "1.1.1.3")


def test_long_ids_are_told_apart() -> None:
    """Records keep a digest of the id, never a prefix of it."""
    brake = throttle(Clock())
    fail(brake, "x" * 100_000 + "a")
    fail(brake, "x" * 100_000 + "a")
    assert not allowed(brake, "x" * 100_000 + "a")
    assert allowed(brake, "x" * 100_000 + "b")


def test_refusals_and_lockouts_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    brake = throttle(clock)
    with caplog.at_level(logging.WARNING):
        fail(brake, "eve")
        fail(brake, "eve")
        assert brake.reserve("eve", HOME) is None
        fail(brake, "eve\nforged line")
        fail(brake, "eve\nforged line")
    assert "login throttle: account 'eve' locked out for 10 s" in caplog.text
    assert "login of 'eve' from 10.0.0.1 refused: account is locked out for 10 s more" in (
        caplog.text
    )
    assert "'eve\\nforged line'" in caplog.text  # ids are quoted: no forged log lines


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("ipv4:192.0.2.7:50000", "192.0.2.7"),
        ("ipv4:192.0.2.7:1", "192.0.2.7"),
        ("ipv6:[::ffff:192.0.2.7]:443", "192.0.2.7"),
        ("ipv6:[2001:db8::1]:443", "2001:db8::/64"),
        ("ipv6:%5B2001:db8::ffff:1%5D:443", "2001:db8::/64"),
        ("ipv6:[2001:db8:0:1::1]:443", "2001:db8:0:1::/64"),
        ("ipv6:[::1]:5", "::/64"),
        ("unix:/tmp/socket", "other"),
        ("garbage", "other"),
    ],
)
def test_address_keys(peer: str, key: str) -> None:
    assert address_key(peer) == key
