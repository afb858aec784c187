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
from teaclave.services.authentication.throttle import ADDRESS
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
