"""The authentication service: users, login and token checks (reference §1.1).

Serves the public ``authentication_api`` endpoint and the internal
``authentication`` endpoint (for the frontend) over one account table in the
storage service, whose accounts it keeps in a cache (exact: its own commits
update it, and a watch of ``user/`` forgets what other writers change). The token
signing key lives in storage too, so tokens stay valid across restarts.
"""

from __future__ import annotations

import logging
import threading

from teaclave.config import ADMIN_PASSWORD_ENV, Config
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.roles import Role, RoleKind
from teaclave.services.authentication.accounts import Accounts, Bootstrap
from teaclave.services.authentication.service import register_api, register_internal
from teaclave.services.authentication.throttle import LoginThrottle
from teaclave.services.authentication.tokens import TokenSigner, load_signing_key
from teaclave.services.authentication.users import MAX_CACHED_USERS, User, Users
from teaclave.services.base import ServiceEnv
from teaclave.storage import keys
from teaclave.storage.api import Store
from teaclave.storage.cache import RecordCache
from teaclave.storage.remote import RemoteStore
from teaclave.storage.watch import Watcher

log = logging.getLogger(__name__)

STOP_GRACE_SECS = 5.0
STORAGE_RETRY_SECS = 0.5
DEV_ADMIN = ("admin", "teaclave")


def _bootstrap(accounts: Accounts, user_id: str, password: str, remedy: str) -> Bootstrap:
    """Create the PlatformAdmin ``user_id`` unless it exists; say so if it was deleted."""
    outcome = accounts.ensure_user(user_id, password, Role(RoleKind.PLATFORM_ADMIN))
    if outcome is Bootstrap.DELETED:
        log.warning(
            "the bootstrap admin %r was deleted and is not re-created: user ids are never "
            "reused (a new account would inherit the old one's files, tasks and functions). %s",
            user_id,
            remedy,
        )
    return outcome


def _refuse_dev_admin_in_production(accounts: Accounts, config: Config) -> None:
    """FAILED_PRECONDITION if production mode would serve the well-known admin/teaclave.

    The account may predate production mode (made by ``auth.dev_teaclave_admin``
    on the same data directory) or be configured as the bootstrap admin.
    """
    if config.attestation.mode == "production" and accounts.password_is(*DEV_ADMIN):
        raise TeaclaveError(
            Status.FAILED_PRECONDITION,
            f"refusing to start in attestation.mode production: the account {DEV_ADMIN[0]!r} "
            f"still has the well-known development password {DEV_ADMIN[1]!r}. Start once in "
            "development mode and change its password (UserChangePassword or UserUpdate) or "
            "delete the account, then switch to production.",
        )


def open_accounts(store: Store, config: Config, cache: RecordCache[User] | None = None) -> Accounts:
    """The account logic over ``store`` (accounts kept in ``cache``; default: a new one),
    with the configured first admin in place.

    A bootstrap admin that was deleted stays deleted; the service starts
    anyway and says so in its log. In production mode the service refuses to
    start while ``admin`` has the password ``teaclave`` (FAILED_PRECONDITION).
    """
    signer = TokenSigner(load_signing_key(store), config.auth.token_lifetime_secs)
    accounts = Accounts(Users(store, config.auth, cache=cache), signer, LoginThrottle())
    password = config.admin_password()
    if password:
        remedy = (
            "Another PlatformAdmin can register a new admin, or set auth.admin_user to a new "
            f"id and restart; unset auth.admin_password and ${ADMIN_PASSWORD_ENV} to silence this."
        )
        outcome = _bootstrap(accounts, config.auth.admin_user, password, remedy)
        if outcome is Bootstrap.CREATED:
            log.info("created platform admin %r", config.auth.admin_user)
    if config.auth.dev_teaclave_admin:
        outcome = _bootstrap(accounts, *DEV_ADMIN, "Turn auth.dev_teaclave_admin off.")
        if outcome is not Bootstrap.DELETED:
            log.warning(
                "auth.dev_teaclave_admin is on: the well-known account %s/%s is a "
                "PlatformAdmin. Never use this outside development.",
                *DEV_ADMIN,
            )
    _refuse_dev_admin_in_production(accounts, config)
    return accounts


def _open_when_storage_is_up(
    store: Store, config: Config, cache: RecordCache[User], stop: threading.Event
) -> Accounts | None:
    while True:
        try:
            return open_accounts(store, config, cache)
        except TeaclaveError as exc:
            if exc.status is not Status.UNAVAILABLE:
                raise
            log.info("waiting for storage: %s", exc.message)
        if stop.wait(STORAGE_RETRY_SECS):
            return None


def main(env: ServiceEnv, stop: threading.Event) -> None:
    """Serve both endpoints until ``stop`` is set."""
    storage = env.peer("storage")
    store = RemoteStore(storage)
    cache = RecordCache[User](MAX_CACHED_USERS)
    users_changes = Watcher(store, [keys.USER], max_waiters=0, on_changes=cache.changed)
    try:
        accounts = _open_when_storage_is_up(store, env.config, cache, stop)
        if accounts is None:
            return
        users_changes.start()
        try:
            servers = [
                env.serve("authentication_api", register_api(accounts), public=True),
                env.serve("authentication", register_internal(accounts)),
            ]
            stop.wait()
            for server in servers:
                server.stop(STOP_GRACE_SECS).wait()
        finally:
            users_changes.close()
            users_changes.join()
    finally:
        storage.close()
