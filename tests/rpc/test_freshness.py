"""Evidence freshness on a hand-driven clock: services renew, peers refuse stale evidence.

The clock starts hours in the past, so every certificate made on it is already
valid for TLS (which checks validity against the real time) and stays valid.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from rpc_helpers import ask, register_echo

from teaclave.attestation import ratls
from teaclave.attestation.evidence import AttestationError
from teaclave.attestation.peer import RECHECK_SECS
from teaclave.config import AttestationConfig, Config, Endpoints
from teaclave.proto import teaclave_access_control_service_pb2 as pb
from teaclave.proto import teaclave_access_control_service_pb2_grpc as pb_grpc
from teaclave.rpc import server as server_module
from teaclave.rpc.channel import attested_channel, fetch_certificate
from teaclave.rpc.identity import RenewingIdentity, ServiceIdentity
from teaclave.services.base import ServiceEnv

MAX_AGE = 3600.0
NEVER = 1e9  # a maximum age whose half is never reached here: such a service does not renew


class Clock:
    def __init__(self) -> None:
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=6)
        self.now = start.replace(microsecond=0)  # evidence is dated in whole seconds

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, secs: float) -> None:
        self.now += datetime.timedelta(seconds=secs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def with_max_age(config: Config, secs: float) -> Config:
    return dataclasses.replace(config, attestation=AttestationConfig(max_evidence_age_secs=secs))


@pytest.fixture
def config(tmp_path: Path, loopback_endpoints: Endpoints) -> Config:
    return with_max_age(Config(data_dir=str(tmp_path), endpoints=loopback_endpoints), MAX_AGE)


Serve = Callable[..., ServiceEnv]


@pytest.fixture
def serve(clock: Clock) -> Iterator[Serve]:
    """Starts Echo as access_control (internal) and as authentication_api (public)."""
    servers: list[grpc.Server] = []

    def start(config: Config) -> ServiceEnv:
        env = ServiceEnv.create(config, "access_control", clock=clock)
        servers.append(env.serve("access_control", register_echo))
        servers.append(env.serve("authentication_api", register_echo, public=True))
        return env

    yield start
    for server in servers:
        server.stop(0)


def presented(address: str) -> bytes:
    """The DER certificate a server presents to a new connection."""
    return fetch_certificate(address).public_bytes(serialization.Encoding.DER)


def issued_at(der: bytes) -> int:
    return int(ratls.extract(der).claims["iat"])


def public_channel(config: Config, env: ServiceEnv, clock: Clock) -> grpc.Channel:
    """A client channel to the public endpoint, verified at the clock's time."""
    address = config.endpoints.authentication_api
    channel, _ = attested_channel(address, "access_control", policy=env.policy, now=clock())
    return channel


def public_ask(channel: grpc.Channel) -> bool:
    reply = pb_grpc.TeaclaveAccessControlStub(channel).AuthorizeApi(
        pb.AuthorizeApiRequest(api="x", user_role=""), timeout=5
    )
    return bool(reply.accept)


def test_services_renew_and_keep_serving_past_the_maximum_age(
    config: Config, serve: Serve, clock: Clock
) -> None:
    serve(config)
    client = ServiceEnv.create(config, "frontend", clock=clock)
    peer = client.peer("access_control")
    first_client = client.identity
    first_server = presented(config.endpoints.authentication_api)
    old_public = public_channel(config, client, clock)
    try:
        assert ask(peer, role="frontend")
        assert public_ask(old_public)

        clock.advance(0.4 * MAX_AGE)  # younger than half the maximum age: nothing renews
        assert ask(peer, role="frontend")
        assert presented(config.endpoints.authentication_api) == first_server
        assert client.identity is first_client

        clock.advance(0.2 * MAX_AGE)  # past half: both sides renew at their next use
        assert ask(peer, role="frontend")
        renewed = presented(config.endpoints.authentication_api)
        assert renewed != first_server
        assert issued_at(renewed) == int(clock().timestamp())
        assert client.identity is not first_client
        assert client.identity.issued == clock()

        clock.advance(0.6 * MAX_AGE)  # the first evidence is now older than the maximum age
        assert ask(peer, role="frontend")  # the existing client
        assert public_ask(old_public)  # an existing public connection
        fresh_public = public_channel(config, client, clock)  # a new client verifies now
        assert public_ask(fresh_public)
        fresh_public.close()
        newcomer = ServiceEnv.create(config, "management", clock=clock).peer("access_control")
        assert ask(newcomer, role="management")
        newcomer.close()
    finally:
        peer.close()
        old_public.close()


def test_a_client_refuses_a_server_whose_evidence_is_too_old(
    config: Config, serve: Serve, clock: Clock
) -> None:
    serve(with_max_age(config, NEVER))
    client = ServiceEnv.create(config, "frontend", clock=clock)
    peer = client.peer("access_control")
    try:
        assert ask(peer, role="frontend")
        clock.advance(MAX_AGE)  # exactly the maximum age: still accepted
        assert ask(peer, role="frontend")
        clock.advance(RECHECK_SECS)  # the existing channel re-checks the server
        with pytest.raises(AttestationError, match=r"evidence is \d+ s old; at most 3600 s"):
            ask(peer, role="frontend")
        with pytest.raises(AttestationError, match="old; at most 3600 s"):
            public_channel(config, client, clock)
    finally:
        peer.close()


def test_a_server_refuses_a_client_whose_evidence_is_too_old(
    config: Config, serve: Serve, clock: Clock
) -> None:
    serve(config)
    stale = ServiceEnv.create(with_max_age(config, NEVER), "frontend", clock=clock)
    peer = stale.peer("access_control")
    try:
        assert ask(peer, role="frontend")
        clock.advance(MAX_AGE + RECHECK_SECS)
        with pytest.raises(grpc.RpcError) as info:
            ask(peer, role="frontend")
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "old; at most 3600 s is accepted" in info.value.details()
    finally:
        peer.close()


def test_a_server_rechecks_a_peers_evidence_after_a_while(
    config: Config, serve: Serve, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(config)
    checked: list[str] = []
    original = server_module.verify_peer

    def spy(*args: object, **kwargs: object) -> object:
        checked.append("x")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(server_module, "verify_peer", spy)
    client = ServiceEnv.create(config, "frontend", clock=clock)
    peer = client.peer("access_control")
    try:
        assert ask(peer, role="frontend")
        clock.advance(RECHECK_SECS - 1)
        assert ask(peer, role="frontend")
        assert len(checked) == 1  # the verdict is reused
        clock.advance(1)
        assert ask(peer, role="frontend")
        assert len(checked) == 2  # and checked again once it is old
    finally:
        peer.close()


def test_a_replaced_channel_stays_open_until_the_next_replacement(
    config: Config, serve: Serve, clock: Clock
) -> None:
    serve(config)
    peer = ServiceEnv.create(config, "frontend", clock=clock).peer("access_control")
    request = pb.AuthorizeApiRequest(api="x", user_role="frontend")

    def works(channel: grpc.Channel) -> bool:
        return bool(
            pb_grpc.TeaclaveAccessControlStub(channel).AuthorizeApi(request, timeout=5).accept
        )

    try:
        first = peer.channel()
        assert peer.channel() is first
        clock.advance(RECHECK_SECS)
        second = peer.channel()
        assert second is not first
        assert works(first)  # a call still using the old channel goes through
        clock.advance(RECHECK_SECS)
        assert peer.channel() is not second
        with pytest.raises(ValueError, match="closed channel"):
            works(first)
        assert works(second)
    finally:
        peer.close()


# --- RenewingIdentity on its own ----------------------------------------------------------------


def fake_identity(now: datetime.datetime) -> ServiceIdentity:
    return ServiceIdentity("svc", b"key", b"server", b"client", b"ca", now)


def test_renewal_is_due_at_half_the_maximum_age(clock: Clock) -> None:
    made: list[datetime.datetime] = []

    def make(now: datetime.datetime) -> ServiceIdentity:
        made.append(now)
        return fake_identity(now)

    identities = RenewingIdentity(make, max_age_secs=200, clock=clock)
    first = identities()
    clock.advance(99)
    assert identities() is first
    clock.advance(1)
    second = identities()
    assert second is not first
    assert identities() is second
    assert made == [clock.now - datetime.timedelta(seconds=100), clock.now]


@pytest.mark.parametrize(
    ("max_age", "retry"),
    [(200.0, 20.0), (600.0, 60.0), (MAX_AGE, 60.0)],  # a tenth of the age, at most a minute
)
def test_a_failed_renewal_keeps_the_identity_and_retries_later(
    clock: Clock, caplog: pytest.LogCaptureFixture, max_age: float, retry: float
) -> None:
    failures = [RuntimeError("TEE device busy")] * 3
    start = clock()

    def make(now: datetime.datetime) -> ServiceIdentity:
        if failures and now > start:
            raise failures.pop()
        return fake_identity(now)

    identities = RenewingIdentity(make, max_age_secs=max_age, clock=clock)
    first = identities()
    clock.advance(max_age / 2)
    for _ in range(3):  # each failure is retried after ``retry`` s, not at every handshake
        assert identities() is first
        clock.advance(retry - 1)
        assert identities() is first
        clock.advance(1)
    assert caplog.text.count("svc: renewing its certificate and evidence failed") == 3
    renewed = identities()
    assert renewed is not first
    assert renewed.issued == start + datetime.timedelta(seconds=max_age / 2 + 3 * retry)
    assert renewed.issued < start + datetime.timedelta(seconds=max_age)  # before it expired
