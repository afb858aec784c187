"""The account cache: token checks read no storage, yet every change counts at once.

This service's own commits update the cache before they return; other writers'
reach it through the watch of ``user/``; a read that raced a commit is not kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from auth_helpers import FAST_AUTH

from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.roles import Role, RoleKind
from teaclave.services.authentication.accounts import Accounts
from teaclave.services.authentication.throttle import LoginThrottle
from teaclave.services.authentication.tokens import KEY_BYTES, TokenSigner
from teaclave.services.authentication.users import User, Users
from teaclave.storage.api import Changes, Record, Write
from teaclave.storage.cache import RecordCache
from teaclave.storage.sqlite import SqliteStore
from teaclave.storage.watch import Watcher

LONG = 60.0
ADMIN = Role(RoleKind.PLATFORM_ADMIN)
ALICE = "alice"


class CountingStore(SqliteStore):
    """A store that counts reads, can hold a read after it read (``hold``), and can lose
    the answer of a commit that it made (``lose_answers``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, bytes(32))
        self.reads = 0
        self.hold: threading.Event | None = None
        self.held = threading.Event()
        self.lose_answers = False

    def get(self, keys: Sequence[str]) -> list[Record]:
        self.reads += 1
        records = super().get(keys)
        hold = self.hold
        if hold is not None:
            self.held.set()
            assert hold.wait(LONG)
        return records

    def commit(self, checks: Sequence[tuple[str, int]], writes: Sequence[Write]) -> int:
        version = super().commit(checks, writes)
        if self.lose_answers:
            raise TeaclaveError(Status.UNAVAILABLE, "connection lost")
        return version


def accounts_over(store: SqliteStore, cache: RecordCache[User] | None = None) -> Accounts:
    users = Users(store, FAST_AUTH, cache=cache)
    return Accounts(users, TokenSigner(bytes(KEY_BYTES), 3600), LoginThrottle())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    store = CountingStore(tmp_path / "db")
    yield store
    store.close()


@pytest.fixture
def cache() -> RecordCache[User]:
    return RecordCache[User](100)


@pytest.fixture
def accounts(store: CountingStore, cache: RecordCache[User]) -> Accounts:
    """Accounts with an admin "root" and alice, a FunctionOwner, over ``cache`` (no watch:
    only this object writes)."""
    accounts = accounts_over(store, cache)
    accounts.ensure_user("root", "root-pw", ADMIN)
    accounts.ensure_user(ALICE, "pw", Role(RoleKind.FUNCTION_OWNER))
    return accounts


def refused(accounts: Accounts, user_id: str, token: str) -> bool:
    """Whether the token check fails, as it must: UNAUTHENTICATED "authentication failed"."""
    with pytest.raises(TeaclaveError) as caught:
        accounts.authenticate(user_id, token)
    return (caught.value.status, caught.value.message) == (
        Status.UNAUTHENTICATED,
        "authentication failed",
    )


def test_token_checks_of_a_known_account_read_no_storage(
    accounts: Accounts, store: CountingStore
) -> None:
    token = accounts.login(ALICE, "pw", "192.0.2.1")
    reads = store.reads
    for _ in range(3):
        assert accounts.authenticate(ALICE, token)[0].id == ALICE
    assert store.reads == reads


def test_own_changes_count_at_once(accounts: Accounts, store: CountingStore) -> None:
    """A password change, a reset, a role change and a deletion each refuse the older
    tokens as soon as they return (no watch runs here: the commit updated the cache)."""
    root = accounts.authenticate("root", accounts.login("root", "root-pw", "192.0.2.1"))[0]
    token = accounts.login(ALICE, "pw", "192.0.2.1")
    alice = accounts.authenticate(ALICE, token)[0]
    accounts.change_password(alice, "pw2")
    assert refused(accounts, ALICE, token)
    token = accounts.login(ALICE, "pw2", "192.0.2.1")
    new_password = accounts.reset_password(root, ALICE)
    assert refused(accounts, ALICE, token)
    token = accounts.login(ALICE, new_password, "192.0.2.1")
    accounts.update(root, ALICE, new_password, Role(RoleKind.DATA_OWNER, "x"))
    assert refused(accounts, ALICE, token)
    token = accounts.login(ALICE, new_password, "192.0.2.1")
    accounts.delete(root, ALICE)
    assert refused(accounts, ALICE, token)


def test_a_commit_whose_answer_was_lost_is_read_again(
    accounts: Accounts, store: CountingStore
) -> None:
    """The commit was made but its answer lost: the account is read again, not trusted."""
    token = accounts.login(ALICE, "pw", "192.0.2.1")
    alice = accounts.authenticate(ALICE, token)[0]
    store.lose_answers = True
    with pytest.raises(TeaclaveError):
        accounts.change_password(alice, "pw2")
    store.lose_answers = False
    assert refused(accounts, ALICE, token)


def test_a_read_that_raced_a_commit_is_not_kept(
    accounts: Accounts, store: CountingStore, cache: RecordCache[User]
) -> None:
    """A token check reads alice from storage, then her password changes here, then the
    check ends: what it read is not kept, so the next check sees the change."""
    token = accounts.login(ALICE, "pw", "192.0.2.1")
    alice = accounts.authenticate(ALICE, token)[0]
    cache.changed(Changes(0, lost=True))  # as a watch reports: alice must be read again
    store.hold = threading.Event()
    checking = threading.Thread(target=accounts.authenticate, args=(ALICE, token))
    checking.start()
    assert store.held.wait(LONG)  # the check read alice, and is held before keeping her
    hold, store.hold = store.hold, None
    accounts.change_password(alice, "pw2")
    hold.set()
    checking.join(LONG)
    assert refused(accounts, ALICE, token)


def test_another_writers_changes_reach_the_cache_through_the_watch(
    accounts: Accounts, store: CountingStore
) -> None:
    """A replica's cache learns of ``accounts``' change from its watch of ``user/``."""
    cache = RecordCache[User](100)
    replica = accounts_over(store, cache)
    forgotten = threading.Semaphore(0)

    def on_changes(changes: Changes) -> None:
        cache.changed(changes)
        forgotten.release()

    watcher = Watcher(store.changes, ["user/"], max_waiters=0, on_changes=on_changes)
    watcher.start()
    try:
        assert forgotten.acquire(timeout=LONG)  # the first answer (everything since 0)
        token = replica.login(ALICE, "pw", "192.0.2.1")
        alice = replica.authenticate(ALICE, token)[0]
        accounts.change_password(alice, "pw2")  # another writer: not the replica
        assert forgotten.acquire(timeout=LONG)
        assert refused(replica, ALICE, token)
    finally:
        watcher.close()
        watcher.join(LONG)
