"""The login throttle on a hand-driven clock: budgets, back-off, known addresses, memory."""

from __future__ import annotations

import logging

import pytest

from teaclave.services.authentication.throttle import (
    ACCOUNT,
    ADDRESS,
    KNOWN_SECS,
    PAIR,
    Budget,
    LoginThrottle,
    address_key,
)

HOME, AWAY, EVIL = "10.0.0.1", "10.0.0.2", "10.0.0.66"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SMALL = Budget(2, 10.0, 40.0, 1000.0)
"""Two failures a round; lockouts of 10, 20, 40, 40 ... s; forgotten after 1000 quiet s."""
MEDIUM = Budget(4, 10.0, 40.0, 1000.0)
LARGE = Budget(100, 10.0, 40.0, 1000.0)
KNOWN = 5000.0


def throttle(
    clock: Clock,
    pair: Budget = SMALL,
    address: Budget = LARGE,
    account: Budget = LARGE,
    max_tracked: int = 100,
) -> LoginThrottle:
    return LoginThrottle(
        pair=pair,
        address=address,
        account=account,
        known_secs=KNOWN,
        clock=clock,
        max_tracked=max_tracked,
    )


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
    """How long ``user`` stays refused at ``address`` from now, probed in 1 s steps."""
    start = clock.now
    while not allowed(brake, user, address):
        clock.now += 1
    waited, clock.now = clock.now - start, start
    return waited


def spread(n: int) -> list[str]:
    """``n`` distinct source addresses."""
    return [f"192.0.2.{i}" if i < 256 else f"198.51.100.{i - 256}" for i in range(n)]


def test_defaults() -> None:
    assert (PAIR.failures, PAIR.lockout_secs, PAIR.max_lockout_secs) == (5, 30, 3600)
    assert (ADDRESS.failures, ADDRESS.lockout_secs, ADDRESS.max_lockout_secs) == (20, 30, 3600)
    assert (ACCOUNT.failures, ACCOUNT.lockout_secs, ACCOUNT.max_lockout_secs) == (50, 30, 3600)
    assert KNOWN_SECS == 7 * 24 * 3600


# --- the pair: the primary lock -----------------------------------------------------------------


def test_a_round_of_failures_locks_the_account_at_that_address_only() -> None:
    clock = Clock()
    brake = throttle(clock)
    fail(brake, "eve")
    assert allowed(brake, "eve")
    fail(brake, "eve")
    assert not allowed(brake, "eve")
    assert allowed(brake, "eve", AWAY)  # the owner elsewhere is not locked out
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


def test_success_clears_the_pair_and_its_back_off() -> None:
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
    brake = throttle(clock, account=MEDIUM)
    first, second = brake.reserve("dave", HOME), brake.reserve("dave", HOME)
    assert first is not None
    assert second is not None
    assert brake.reserve("dave", HOME) is None  # two undecided attempts use up the pair's budget
    with first:
        pass  # undecided (e.g. storage was down): given back uncounted
    assert allowed(brake, "dave")
    with second:
        second.failed()
    assert allowed(brake, "dave")  # one failure so far
    held = [brake.reserve("dave", address) for address in spread(3)]
    assert None not in held  # with the failure at HOME: the account's 4
    assert brake.reserve("dave", AWAY) is None


# --- one attacker cannot lock the owner out ---------------------------------------------------


def test_guessing_from_one_address_never_locks_the_owner_out() -> None:
    """The reviewer's case: ~5 guesses an hour from anywhere kept ``admin`` locked for good."""
    clock = Clock()
    brake = LoginThrottle(clock=clock)  # the defaults
    succeed(brake, "admin", HOME)  # the owner logged in from HOME before
    for round_ in range(1, 25):  # a day of rounds, each as soon as the last lockout ends
        for _ in range(PAIR.failures):
            fail(brake, "admin", EVIL)
        assert not allowed(brake, "admin", EVIL)
        assert allowed(brake, "admin", HOME)
        # Nor elsewhere: before one address reaches the account's budget, its pair's
        # lockouts grow to the account record's forget period, and the count starts over.
        assert allowed(brake, "admin", f"203.0.113.{round_}")
        clock.now += lockout(brake, clock, "admin", EVIL)


def test_distributed_guessing_is_bounded_by_the_account_budget() -> None:
    clock = Clock()
    brake = throttle(clock, account=MEDIUM)
    for address in spread(4):  # one guess from each of many addresses
        fail(brake, "admin", address)
    assert not allowed(brake, "admin", AWAY)  # an address it never saw
    assert lockout(brake, clock, "admin", AWAY) == 10
    assert allowed(brake, "bob", AWAY)
    clock.now += 10
    for address in spread(8)[4:]:
        fail(brake, "admin", address)
    assert lockout(brake, clock, "admin", AWAY) == 20  # the account's back-off grows


def test_concurrent_guesses_from_many_addresses_check_at_most_the_account_budget() -> None:
    """Reserved (undecided) attempts hold the budget, so guesses arriving at once are capped."""
    brake = LoginThrottle(clock=Clock())  # the defaults
    attempts = [brake.reserve("admin", address) for address in spread(ACCOUNT.failures + 10)]
    admitted = [attempt for attempt in attempts if attempt is not None]
    assert len(admitted) == ACCOUNT.failures
    for attempt in admitted[:5]:
        with attempt:
            attempt.failed()
    assert brake.reserve("admin", "203.0.113.1") is None  # failed and pending fill the budget


def test_the_owner_keeps_access_from_a_known_address() -> None:
    clock = Clock()
    brake = throttle(clock, account=MEDIUM)
    succeed(brake, "admin", HOME)
    clock.now += KNOWN - 100
    for address in spread(4):
        fail(brake, "admin", address)
    assert not allowed(brake, "admin", AWAY)
    assert allowed(brake, "admin", HOME)  # logged in from there within known_secs
    succeed(brake, "admin", HOME)  # ... which renews it
    clock.now += KNOWN - 1
    assert allowed(brake, "admin", HOME)
    clock.now += 1  # known_secs after the last success
    for address in spread(8)[4:]:
        fail(brake, "admin", address)
    assert not allowed(brake, "admin", HOME)


def test_a_known_pair_is_exempt_from_the_address_budget() -> None:
    """Behind one NAT: a guesser locks the address for everyone but users known there."""
    clock = Clock()
    brake = throttle(clock, address=MEDIUM)
    succeed(brake, "owner", HOME)
    for user in ("u1", "u2", "u3", "u4"):
        fail(brake, user, HOME)
    assert not allowed(brake, "newcomer", HOME)
    assert allowed(brake, "owner", HOME)
    assert allowed(brake, "newcomer", AWAY)


def test_a_guesser_at_a_known_address_gets_the_pair_budget_only() -> None:
    clock = Clock()
    brake = throttle(clock, address=MEDIUM, account=MEDIUM)
    succeed(brake, "owner", HOME)
    lockouts = []
    for _ in range(3):
        fail(brake, "owner", HOME)
        fail(brake, "owner", HOME)
        lockouts.append(lockout(brake, clock, "owner", HOME))
        clock.now += lockouts[-1]
    assert lockouts == [10, 20, 40]
    assert allowed(brake, "owner", AWAY)  # known-pair guesses count nowhere else
    assert allowed(brake, "other", HOME)


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
    assert not allowed(brake, "victim4", HOME)


def test_a_success_does_not_clear_the_account() -> None:
    """The owner's login must not give distributed guessers a fresh budget."""
    clock = Clock()
    brake = throttle(clock, account=MEDIUM)
    for address in spread(3):
        fail(brake, "admin", address)
    succeed(brake, "admin", HOME)
    fail(brake, "admin", spread(4)[3])
    assert not allowed(brake, "admin", AWAY)


def test_an_address_is_limited_across_accounts() -> None:
    clock = Clock()
    brake = throttle(clock, address=Budget(3, 10.0, 40.0, 1000.0))
    for user in ("u1", "u2", "u3"):
        fail(brake, user, HOME)
    assert not allowed(brake, "u4", HOME)  # an account never tried before
    assert allowed(brake, "u1", AWAY)  # each account failed once only
    assert lockout(brake, clock, "u4", HOME) == 10


def test_spraying_from_one_address_is_bounded() -> None:
    """An hour of guesses at fresh ids from one address: the address budget caps them."""
    clock = Clock()
    brake = LoginThrottle(clock=clock)  # the defaults
    checked, start = 0, clock.now
    while clock.now < start + 3600:
        attempt = brake.reserve(f"id{checked}", EVIL)
        if attempt is not None:
            checked += 1
            with attempt:
                attempt.failed()
        clock.now += 1
    lockouts = [ADDRESS.lockout(n) for n in range(1, 10)]
    rounds = next(n for n in range(1, 10) if sum(lockouts[:n]) >= 3600)  # 7
    assert checked <= ADDRESS.failures * rounds


# --- memory -----------------------------------------------------------------------------------


def test_filling_the_table_does_not_forget_a_lockout() -> None:
    """The reviewer's attack: spraying other ids evicted a locked record, and its lockout."""
    clock = Clock()
    brake = throttle(clock, account=SMALL, max_tracked=4)
    fail(brake, "admin", EVIL)
    fail(brake, "admin", AWAY)  # the account is locked too (elsewhere: its own budget)
    assert not allowed(brake, "admin", EVIL)
    for n, address in enumerate(spread(20)):  # far more fresh ids than the table holds
        attempt = brake.reserve(f"spray{n}", address)
        if attempt is not None:
            with attempt:
                attempt.failed()
    assert not allowed(brake, "admin", EVIL)
    assert not allowed(brake, "admin", HOME)
    assert lockout(brake, clock, "admin", HOME) == 10
    clock.now += 10
    fail(brake, "admin", spread(21)[20])
    fail(brake, "admin", spread(22)[21])
    assert lockout(brake, clock, "admin", HOME) == 20  # the back-off survived too


def test_a_table_full_of_locked_records_refuses_new_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    brake = throttle(clock, max_tracked=2)
    for user in ("a", "b"):
        fail(brake, user)
        fail(brake, user)
    with caplog.at_level(logging.ERROR):
        assert not allowed(brake, "c")  # fail closed
    assert (
        "login of 'c' from 10.0.0.1 refused: the login throttle's account at this address "
        "table is full of locked records" in caplog.text
    )
    clock.now += 10  # the lockouts ended, the back-off is kept until forgotten
    assert not allowed(brake, "c")
    assert allowed(brake, "a")
    clock.now += 1000  # quiet for forget_secs: the records may go
    assert allowed(brake, "c")


def test_known_pairs_are_evicted_last() -> None:
    clock = Clock()
    brake = throttle(clock, account=MEDIUM, max_tracked=3)
    succeed(brake, "owner", HOME)  # the least recently used record
    fail(brake, "x", AWAY)
    for user in ("y", "z"):  # each evicts the oldest record that is not known
        fail(brake, user, AWAY)
    for address in spread(4):  # locks the account; each evicts a record not known
        fail(brake, "owner", address)
    assert allowed(brake, "owner", HOME)


def test_a_known_pair_is_evicted_rather_than_a_lock() -> None:
    clock = Clock()
    brake = throttle(clock, max_tracked=2)
    succeed(brake, "owner", HOME)
    fail(brake, "a")
    fail(brake, "a")
    assert allowed(brake, "c")  # the owner's record was the only one holding no lock
    assert not allowed(brake, "a")


def test_pending_attempts_are_never_evicted() -> None:
    clock = Clock()
    brake = throttle(clock, max_tracked=1)
    held = [brake.reserve("dave", HOME), brake.reserve("dave", HOME)]
    for n, address in enumerate(spread(4)):
        assert brake.reserve(f"spray{n}", address) is None  # the table is full of reservations
    for attempt in held:
        assert attempt is not None
        with attempt:
            attempt.failed()
    assert lockout(brake, clock, "dave") == 10


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
    assert (
        "login throttle: account at this address locked out for 10 s (login of 'eve' from "
        "10.0.0.1)" in caplog.text
    )
    assert (
        "login of 'eve' from 10.0.0.1 refused: account at this address is locked out for 10 s "
        "more" in caplog.text
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
