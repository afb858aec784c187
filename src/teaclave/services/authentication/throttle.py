"""A brake on password guessing that one attacker cannot turn against an account's owner.

Three budgets, each a number of failures per round; a round's last failure
locks its key out for ``lockout_secs``, doubling with each further round up to
``max_lockout_secs``:

- the **pair** (account, source address), 5: the primary lock. A guesser at
  one address locks only the pair it uses, never the owner elsewhere.
- the **address**, 20: an address spraying many accounts. Every failure
  counts, also for unknown ids, so one address adds records for at most 20
  new ids a round.
- the **account**, 50: guessing spread over many addresses. One address alone
  never uses it up: after 40 failures its pair's lockouts reach an hour, the
  account record's forget period, and the account's count starts over.

The address and account budgets do not apply to a *known* pair, one that
logged in successfully within ``known_secs``; its failures count only against
the pair. So the owner keeps access from where they logged in before while
guessers behind the same NAT, or spread over many addresses, have locked the
address or the account for everyone else. A success clears its pair's record
and makes it known; the address's and account's counts stay (a login to
one's own account must not reset a spraying address, nor the owner's login a
distributed guesser's progress).

Every attempt is reserved in its budgets under one lock *before* its password
is checked: a key whose failed and pending attempts fill its round admits no
further attempt, however many arrive at once. A record is forgotten after
``forget_secs`` without a failure (counted from the end of its last lockout;
a known pair only once it is no longer known). Each table keeps at most
``max_tracked`` records of a fixed size (ids are hashed). Room is made by
evicting the least recently used record that holds no lock, back-off or
pending attempt, known pairs last: filling a table never resets a lockout. A
table full of records that must be kept refuses new keys (logged): fail
closed. Nothing survives a restart, and instances of the service do not share
their counts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from teaclave.rpc.server import peer_address

log = logging.getLogger(__name__)

MAX_TRACKED = 10_000
IPV6_PREFIX = 64
"""IPv6 clients are counted per /64: one host usually holds a whole /64."""
OTHER_ADDRESS = "other"
"""The key of every peer that is not an IP address."""
KNOWN_SECS = 7 * 24 * 3600.0
"""A pair stays known this long after its last successful login."""
_LOGGED_ID_CHARS = 128


@dataclass(frozen=True)
class Budget:
    """How many failures a round admits and how long the lockouts after them last."""

    failures: int
    lockout_secs: float
    max_lockout_secs: float
    forget_secs: float

    def lockout(self, rounds: int) -> float:
        """The lockout after the ``rounds``-th failed round (1: the first)."""
        doublings = min(rounds - 1, 62)  # beyond this the cap applies anyway
        return float(min(self.lockout_secs * 2**doublings, self.max_lockout_secs))


PAIR = Budget(failures=5, lockout_secs=30.0, max_lockout_secs=3600.0, forget_secs=3600.0)
ADDRESS = Budget(failures=20, lockout_secs=30.0, max_lockout_secs=3600.0, forget_secs=3600.0)
ACCOUNT = Budget(failures=50, lockout_secs=30.0, max_lockout_secs=3600.0, forget_secs=3600.0)


def address_key(peer: str) -> str:
    """The throttle's key for a gRPC peer string: its IPv4 address, its IPv6 /64, or "other"."""
    address = peer_address(peer)
    if address is None:
        return OTHER_ADDRESS
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))


def _account_key(user_id: str) -> str:
    """Ids are hashed: a record's size does not grow with the id's length."""
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class _Record:
    failures: int = 0  # failed attempts of the current round
    pending: int = 0  # attempts reserved and not yet decided
    rounds: int = 0  # lockouts so far
    locked_until: float = -math.inf
    last_failure: float = -math.inf
    last_success: float = -math.inf  # pairs only: when the pair became known


class _Table:
    """The records of one kind of key. Callers hold the throttle's lock."""

    def __init__(self, kind: str, budget: Budget, max_tracked: int, known_secs: float) -> None:
        self.kind = kind
        self._budget = budget
        self._max = max_tracked
        self._known_secs = known_secs
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def locked_for(self, key: str, now: float) -> float:
        """Seconds ``key`` admits no attempt (inf: its budget is held by pending attempts)."""
        record = self._records.get(key)
        if record is None:
            return 0.0
        if self._forgotten(record, now):
            del self._records[key]
            return 0.0
        if record.locked_until > now:
            return record.locked_until - now
        return math.inf if record.failures + record.pending >= self._budget.failures else 0.0

    def known(self, key: str, now: float) -> bool:
        """Whether ``key`` had a success within ``known_secs``."""
        record = self._records.get(key)
        return record is not None and self._known(record, now)

    def make_room(self, key: str, now: float) -> bool:
        """Whether ``key`` has a record or one can be added, evicting one if need be.

        The victim is the least recently used record that holds no state worth
        keeping (lock, back-off, pending attempt), one of a known pair only if
        there is no other; with none, the table is full.
        """
        if key in self._records or len(self._records) < self._max:
            return True
        victim = None
        for old, record in self._records.items():  # least recently used first
            if self._holds_state(record, now):
                continue
            if not self._known(record, now):
                victim = old
                break
            if victim is None:
                victim = old
        if victim is None:
            return False
        del self._records[victim]
        return True

    def reserve(self, key: str) -> None:
        record = self._records.setdefault(key, _Record())
        self._records.move_to_end(key)
        record.pending += 1

    def fail(self, key: str, now: float) -> float:
        """Count a failed attempt; the lockout it starts, in seconds (0: none)."""
        record = self._decide(key)
        record.failures += 1
        record.last_failure = now
        if record.failures < self._budget.failures:
            return 0.0
        record.failures, record.rounds = 0, record.rounds + 1
        lockout = self._budget.lockout(record.rounds)
        record.locked_until = now + lockout
        return lockout

    def release(self, key: str) -> None:
        """Return a reservation that was not a failure."""
        self._decide(key)

    def succeed(self, key: str, now: float) -> None:
        """A success: clear the record's failures and back-off, and mark it known."""
        record = self._decide(key)
        record.failures, record.rounds, record.locked_until = 0, 0, -math.inf
        record.last_success = now

    def _decide(self, key: str) -> _Record:
        record = self._records[key]  # pending > 0: never evicted nor forgotten meanwhile
        record.pending -= 1
        return record

    def _known(self, record: _Record, now: float) -> bool:
        return now - record.last_success < self._known_secs

    def _holds_state(self, record: _Record, now: float) -> bool:
        """Whether evicting ``record`` would lose a lock, back-off or reservation."""
        kept = record.pending or record.rounds or record.locked_until > now
        return bool(kept) and not self._forgotten(record, now)

    def _forgotten(self, record: _Record, now: float) -> bool:
        quiet = now - max(record.last_failure, record.locked_until)
        return (
            record.pending == 0
            and quiet >= self._budget.forget_secs
            and not self._known(record, now)
        )


Key = tuple[_Table, str]


class LoginThrottle:
    """Reserves login attempts against the pair's, the address's and the account's budgets."""

    def __init__(
        self,
        *,
        pair: Budget = PAIR,
        address: Budget = ADDRESS,
        account: Budget = ACCOUNT,
        known_secs: float = KNOWN_SECS,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self._pairs = _Table("account at this address", pair, max_tracked, known_secs)
        self._addresses = _Table("address", address, max_tracked, 0.0)
        self._accounts = _Table("account", account, max_tracked, 0.0)
        self._clock = clock
        self._lock = threading.Lock()

    def reserve(self, user_id: str, address: str) -> Attempt | None:
        """An attempt to check a password now, or None (logged) if a budget is used up."""
        shown = user_id[:_LOGGED_ID_CHARS]
        account = _account_key(user_id)
        pair = f"{account} {address}"
        with self._lock:
            now = self._clock()
            keys: list[Key] = [(self._pairs, pair)]
            if not self._pairs.known(pair, now):
                keys += [(self._addresses, address), (self._accounts, account)]
            for table, key in keys:
                wait = table.locked_for(key, now)
                if wait > 0:
                    log.warning(
                        "login of %r from %s refused: %s %s",
                        shown,
                        address,
                        table.kind,
                        "is busy with other attempts"
                        if math.isinf(wait)
                        else f"is locked out for {wait:.0f} s more",
                    )
                    return None
            for table, key in keys:
                if not table.make_room(key, now):
                    log.error(
                        "login of %r from %s refused: the login throttle's %s table is full "
                        "of locked records",
                        shown,
                        address,
                        table.kind,
                    )
                    return None
            for table, key in keys:
                table.reserve(key)
        return Attempt(self, shown, address, tuple(keys))

    def _fail(self, attempt: Attempt) -> None:
        with self._lock:
            now = self._clock()
            for table, key in attempt.keys:
                lockout = table.fail(key, now)
                if lockout:
                    log.warning(
                        "login throttle: %s locked out for %.0f s (login of %r from %s)",
                        table.kind,
                        lockout,
                        attempt.user_id,
                        attempt.address,
                    )

    def _succeed(self, attempt: Attempt) -> None:
        with self._lock:
            now = self._clock()
            for table, key in attempt.keys:
                if table is self._pairs:
                    table.succeed(key, now)
                else:
                    table.release(key)

    def _abandon(self, attempt: Attempt) -> None:
        with self._lock:
            for table, key in attempt.keys:
                table.release(key)


class Attempt:
    """A reserved login attempt; decide it with :meth:`failed` or :meth:`succeeded`.

    Used as a context manager: an attempt left undecided (the check itself
    failed, e.g. storage was unreachable) gives its reservations back uncounted.
    """

    def __init__(
        self, throttle: LoginThrottle, user_id: str, address: str, keys: tuple[Key, ...]
    ) -> None:
        self._throttle = throttle
        self.user_id = user_id  # as logged
        self.address = address
        self.keys = keys
        self._decided = False

    def failed(self) -> None:
        """The password was wrong (or the account unknown): count a failure."""
        self._decide(self._throttle._fail)

    def succeeded(self) -> None:
        """The password was right: clear the pair's record and make the pair known."""
        self._decide(self._throttle._succeed)

    def _decide(self, outcome: Callable[[Attempt], None]) -> None:
        if not self._decided:
            self._decided = True
            outcome(self)

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, *exc: object) -> None:
        self._decide(self._throttle._abandon)
