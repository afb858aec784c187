"""A brake on password guessing, per account and per source address (in memory, per process).

Every login attempt is reserved under one lock *before* its password is
checked: an account (or address) with ``failures`` failed and pending attempts
in its current round admits no further attempt, however many arrive at once.
A round's last failure locks the key out for ``lockout_secs``, doubling with
each further round up to ``max_lockout_secs``. A success clears the account's
record; it gives the address back only its own reservation, so logging in to
one's own account between guesses does not reset an address's count. A record
is forgotten after ``forget_secs`` without a failure (counted from the end of
its last lockout), and each table keeps at most ``max_tracked`` records of a
fixed size (ids are hashed), the least recently used going first. Nothing
survives a restart, and instances of the service do not share their counts.
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


ACCOUNT = Budget(failures=5, lockout_secs=30.0, max_lockout_secs=3600.0, forget_secs=3600.0)
ADDRESS = Budget(failures=20, lockout_secs=30.0, max_lockout_secs=3600.0, forget_secs=3600.0)


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


@dataclass
class _Record:
    failures: int = 0  # failed attempts of the current round
    pending: int = 0  # attempts reserved and not yet decided
    rounds: int = 0  # lockouts so far
    locked_until: float = -math.inf
    last_failure: float = -math.inf


class _Table:
    """The records of one kind of key (accounts or addresses). Callers hold the lock."""

    def __init__(self, kind: str, budget: Budget, max_tracked: int) -> None:
        self.kind = kind
        self._budget = budget
        self._max = max_tracked
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def locked_for(self, key: str, now: float) -> float:
        """Seconds ``key`` admits no attempt (inf: its budget is held by pending attempts)."""
        record = self._records.get(key)
        if record is None:
            return 0.0
        quiet = now - max(record.last_failure, record.locked_until)
        if quiet >= self._budget.forget_secs and record.pending == 0:
            del self._records[key]
            return 0.0
        if record.locked_until > now:
            return record.locked_until - now
        return math.inf if record.failures + record.pending >= self._budget.failures else 0.0

    def reserve(self, key: str) -> None:
        self._touch(key).pending += 1

    def fail(self, key: str, now: float) -> float:
        """Count a failed attempt; the lockout it starts, in seconds (0: none)."""
        record = self._touch(key)
        record.pending = max(record.pending - 1, 0)
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
        record = self._records.get(key)
        if record is not None:
            record.pending = max(record.pending - 1, 0)

    def clear(self, key: str) -> None:
        self._records.pop(key, None)

    def _touch(self, key: str) -> _Record:
        record = self._records.pop(key, None) or _Record()
        self._records[key] = record
        if len(self._records) > self._max:
            self._records.popitem(last=False)
        return record


class LoginThrottle:
    """Reserves login attempts against the account's and the address's budgets."""

    def __init__(
        self,
        *,
        account: Budget = ACCOUNT,
        address: Budget = ADDRESS,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self._accounts = _Table("account", account, max_tracked)
        self._addresses = _Table("address", address, max_tracked)
        self._clock = clock
        self._lock = threading.Lock()

    def reserve(self, user_id: str, address: str) -> Attempt | None:
        """An attempt to check a password now, or None (logged) if a budget is used up."""
        with self._lock:
            now = self._clock()
            for table, key in self._keys(user_id, address):
                wait = table.locked_for(key, now)
                if wait > 0:
                    log.warning(
                        "login of %r from %s refused: %s %s",
                        user_id[:_LOGGED_ID_CHARS],
                        address,
                        table.kind,
                        "is busy with other attempts"
                        if math.isinf(wait)
                        else f"is locked out for {wait:.0f} s more",
                    )
                    return None
            for table, key in self._keys(user_id, address):
                table.reserve(key)
        return Attempt(self, user_id, address)

    def _keys(self, user_id: str, address: str) -> tuple[tuple[_Table, str], ...]:
        return (self._accounts, _account_key(user_id)), (self._addresses, address)

    def _fail(self, user_id: str, address: str) -> None:
        with self._lock:
            now = self._clock()
            for table, key in self._keys(user_id, address):
                lockout = table.fail(key, now)
                if lockout:
                    shown = user_id[:_LOGGED_ID_CHARS] if table is self._accounts else address
                    log.warning(
                        "login throttle: %s %r locked out for %.0f s", table.kind, shown, lockout
                    )

    def _succeed(self, user_id: str, address: str) -> None:
        with self._lock:
            self._accounts.clear(_account_key(user_id))
            self._addresses.release(address)

    def _abandon(self, user_id: str, address: str) -> None:
        with self._lock:
            for table, key in self._keys(user_id, address):
                table.release(key)


class Attempt:
    """A reserved login attempt; decide it with :meth:`failed` or :meth:`succeeded`.

    Used as a context manager: an attempt left undecided (the check itself
    failed, e.g. storage was unreachable) gives its reservations back uncounted.
    """

    def __init__(self, throttle: LoginThrottle, user_id: str, address: str) -> None:
        self._throttle = throttle
        self._user_id = user_id
        self._address = address
        self._decided = False

    def failed(self) -> None:
        """The password was wrong (or the account unknown): count a failure."""
        self._decide(self._throttle._fail)

    def succeeded(self) -> None:
        """The password was right: clear the account's record."""
        self._decide(self._throttle._succeed)

    def _decide(self, outcome: Callable[[str, str], None]) -> None:
        if not self._decided:
            self._decided = True
            outcome(self._user_id, self._address)

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, *exc: object) -> None:
        self._decide(self._throttle._abandon)
