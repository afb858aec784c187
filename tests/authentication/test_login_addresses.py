"""Per-address login limits through the servicer, with clients on several addresses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_helpers import ADMIN, ADMIN_PASSWORD, FAST_AUTH

from teaclave.config import Config
from teaclave.core.errors import TeaclaveError
from teaclave.proto import teaclave_authentication_service_pb2 as pb
from teaclave.services.authentication import open_accounts
from teaclave.services.authentication.accounts import THROTTLED
from teaclave.services.authentication.service import AuthenticationApi
from teaclave.services.authentication.throttle import ACCOUNT, ADDRESS, PAIR
from teaclave.storage.sqlite import SqliteStore


class Context:
    """The part of a gRPC servicer context UserLogin reads: the peer."""

    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer


@pytest.fixture
def api(tmp_path: Path) -> Iterator[AuthenticationApi]:
    store = SqliteStore(tmp_path / "auth.db", bytes(32))
    yield AuthenticationApi(open_accounts(store, Config(auth=FAST_AUTH)))
    store.close()


def login(api: AuthenticationApi, peer: str, user: str, password: str) -> str:
    """ "token" or the refusal's message."""
    request = pb.UserLoginRequest(id=user, password=password)
    try:
        api.UserLogin(request, Context(peer))  # type: ignore[arg-type]
    except TeaclaveError as exc:
        return exc.message
    return "token"


@pytest.mark.parametrize(
    ("guesser", "neighbour", "elsewhere"),
    [
        ("ipv4:198.51.100.1:{}", "ipv6:[::ffff:198.51.100.1]:9", "ipv4:198.51.100.2:9"),
        ("ipv6:[2001:db8::{:x}]:443", "ipv6:[2001:db8::ffff:1]:9", "ipv6:[2001:db8:0:1::1]:9"),
    ],
)
def test_an_address_is_limited_across_accounts(
    api: AuthenticationApi, guesser: str, neighbour: str, elsewhere: str
) -> None:
    for n in range(ADDRESS.failures):  # one guess at each of many accounts, from many ports
        peer = guesser.format(1000 + n)
        assert login(api, peer, f"user{n}", "guess") == "authentication failed"
    assert login(api, guesser.format(1), ADMIN, ADMIN_PASSWORD) == THROTTLED
    assert login(api, neighbour, ADMIN, ADMIN_PASSWORD) == THROTTLED  # same host (or /64)
    assert login(api, elsewhere, ADMIN, ADMIN_PASSWORD) == "token"
    assert login(api, elsewhere, "user0", "guess") == "authentication failed"


HOME, GUESSER, FRESH = "ipv4:192.0.2.1:5", "ipv4:203.0.113.66:{}", "ipv4:192.0.2.200:5"


def test_guesses_from_one_address_do_not_lock_the_owner_out(api: AuthenticationApi) -> None:
    for n in range(PAIR.failures):
        assert login(api, GUESSER.format(n), ADMIN, "guess") == "authentication failed"
    assert login(api, GUESSER.format(99), ADMIN, ADMIN_PASSWORD) == THROTTLED
    assert login(api, FRESH, ADMIN, ADMIN_PASSWORD) == "token"


def test_behind_one_address_known_users_keep_access(api: AuthenticationApi) -> None:
    """A guesser behind the owner's NAT locks the address for all but the users known there."""
    assert login(api, HOME, ADMIN, ADMIN_PASSWORD) == "token"
    for n in range(ADDRESS.failures):
        assert login(api, HOME, f"user{n}", "guess") == "authentication failed"
    assert login(api, HOME, "newcomer", "guess") == THROTTLED
    assert login(api, HOME, ADMIN, ADMIN_PASSWORD) == "token"


def test_distributed_guessing_locks_the_account_for_unknown_addresses_only(
    api: AuthenticationApi,
) -> None:
    assert login(api, HOME, ADMIN, ADMIN_PASSWORD) == "token"
    for n in range(ACCOUNT.failures):  # one guess from each of many addresses
        peer = f"ipv6:[2001:db8:{n:x}::1]:443"
        assert login(api, peer, ADMIN, "guess") == "authentication failed"
    assert login(api, FRESH, ADMIN, ADMIN_PASSWORD) == THROTTLED
    assert login(api, HOME, ADMIN, ADMIN_PASSWORD) == "token"
    assert login(api, FRESH, "nobody", "guess") == "authentication failed"  # other accounts
