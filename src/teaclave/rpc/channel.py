"""Client channels to attested endpoints: verify first, then pin.

Python gRPC has no certificate-verification callback, so a channel is opened
in two steps: (1) a plain TLS handshake fetches the server certificate, whose
evidence is verified against the policy; (2) the gRPC channel pins exactly
that certificate as its only trust anchor, so it can only reach the same key.
Nothing is sent to the server before (1) succeeds.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from teaclave.attestation.evidence import AttestationError, AttestationPolicy, Verdict
from teaclave.attestation.peer import RECHECK_SECS, verify_peer
from teaclave.core.errors import Status, TeaclaveError
from teaclave.observability import calls
from teaclave.rpc import certs
from teaclave.rpc.identity import Clock, IdentitySource, ServiceIdentity, utc_now

T = TypeVar("T")


def never_sent(error: grpc.RpcError) -> bool:
    """Whether a failed call surely never reached the server: no connection was made.

    gRPC reports a call that found no usable connection (refused, or a TLS
    handshake that failed, e.g. against a pinned certificate the restarted peer
    no longer has) with this fixed text; such a call may always be sent again.
    """
    return error.code() == grpc.StatusCode.UNAVAILABLE and (error.details() or "").startswith(
        "failed to connect to all addresses"
    )


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise TeaclaveError(Status.INVALID_ARGUMENT, f"bad address {address!r} (want host:port)")
    return host.strip("[]"), int(port)


def _memfd(name: str, data: bytes) -> str:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    return f"/proc/self/fd/{fd}"


def fetch_certificate(
    address: str, identity: ServiceIdentity | None = None, timeout: float = 5.0
) -> x509.Certificate:
    """The certificate the server at ``address`` presents (nothing else is sent)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    if identity is not None:
        cert_path = _memfd("cert", identity.client_cert_pem)
        key_path = _memfd("key", identity.key_pem)
        try:
            context.load_cert_chain(cert_path, key_path)
        finally:
            for path in (cert_path, key_path):
                os.close(int(path.rsplit("/", 1)[1]))
    host, port = _split(address)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise TeaclaveError(
            Status.UNAVAILABLE, f"cannot reach {address}: {exc.strerror or exc}"
        ) from None
    if not der:
        raise AttestationError(f"{address} presented no certificate")
    return x509.load_der_x509_certificate(der)


def attested_channel(
    address: str,
    service: str,
    *,
    policy: AttestationPolicy,
    identity: ServiceIdentity | None = None,
    max_message_bytes: int = 4 * 1024 * 1024,
    timeout: float = 5.0,
    now: datetime | None = None,
) -> tuple[grpc.Channel, Verdict]:
    """A channel to ``service`` at ``address`` whose evidence the policy accepts ``now``."""
    cert = fetch_certificate(address, identity, timeout)
    verdict = verify_peer(
        cert.public_bytes(serialization.Encoding.DER),
        services=frozenset({service}),
        policy=policy,
        now=now or utc_now(),
    )
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.to_pem(cert),
        private_key=identity.key_pem if identity else None,
        certificate_chain=identity.client_cert_pem if identity else None,
    )
    channel = grpc.secure_channel(
        address,
        credentials,
        options=[
            ("grpc.ssl_target_name_override", certs.server_name(service)),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    return channel, verdict


class Peer:
    """A lazily dialed, self-healing attested channel to one service.

    When a call fails with UNAVAILABLE (e.g. the peer restarted with a new
    key), the channel is dropped and the next call dials and verifies again.
    A new channel is also dialed when this service's identity was renewed
    (its client certificate changes) and when the peer's evidence was last
    verified :data:`RECHECK_SECS` ago (so a peer whose evidence grew too old
    is refused). The replaced channel is closed at the next replacement, once
    the calls of :meth:`call` still running on it have ended (closing it under
    them would cancel them: CANCELLED, not the peer's answer). Its calls are
    counted, timed and traced (:func:`teaclave.observability.calls.observed`).
    """

    def __init__(
        self,
        address: str,
        service: str,
        *,
        policy: AttestationPolicy,
        identity: IdentitySource | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        clock: Clock = utc_now,
    ) -> None:
        self.address = address
        self.service = service
        self._policy = policy
        self._identity = identity
        self._max = max_message_bytes
        self._clock = clock
        self._channel: grpc.Channel | None = None
        self._retired: grpc.Channel | None = None
        self._dialed_as: ServiceIdentity | None = None
        self._verified = datetime.min.replace(tzinfo=UTC)
        self._calls: dict[grpc.Channel, int] = {}  # calls of call() running, by channel
        self._closing: set[grpc.Channel] = set()  # closed once their calls have ended
        self._lock = threading.Lock()

    def channel(self) -> grpc.Channel:
        """The current channel, dialing (and verifying) if needed."""
        with self._lock:
            return self._current()

    def _current(self) -> grpc.Channel:
        """:meth:`channel`, under the lock."""
        identity = self._identity() if self._identity else None
        now = self._clock()
        if (
            self._channel is None
            or identity is not self._dialed_as
            or not timedelta(0) <= now - self._verified < timedelta(seconds=RECHECK_SECS)
        ):
            self._retire()
            channel, _ = attested_channel(
                self.address,
                self.service,
                policy=self._policy,
                identity=identity,
                max_message_bytes=self._max,
                now=now,
            )
            self._channel = calls.observed(channel, self.service)
            self._dialed_as, self._verified = identity, now
        return self._channel

    @contextmanager
    def _using(self) -> Iterator[grpc.Channel]:
        """The current channel, not closed before the block ends."""
        with self._lock:
            channel = self._current()
            self._calls[channel] = self._calls.get(channel, 0) + 1
        try:
            yield channel
        finally:
            with self._lock:
                self._calls[channel] -= 1
                if not self._calls[channel]:
                    del self._calls[channel]
                    if channel in self._closing:
                        self._closing.discard(channel)
                        channel.close()

    def call(self, fn: Callable[[grpc.Channel], T], *, repeatable: bool = False) -> T:
        """Run ``fn`` on the channel.

        If the peer was unavailable the channel is dropped (the next call dials
        and verifies again). The call is tried once more at once if it never
        reached the peer, or is ``repeatable`` (changes nothing); otherwise its
        effect is unknown and the error is raised.
        """
        with self._using() as channel:
            try:
                return fn(channel)
            except grpc.RpcError as exc:
                if not (self.failed(exc, channel) and (repeatable or never_sent(exc))):
                    raise
        with self._using() as channel:
            return fn(channel)

    def failed(self, error: grpc.RpcError, channel: grpc.Channel) -> bool:
        """Note that a call on ``channel`` failed with ``error`` (for calls not made by
        :meth:`call`, e.g. a stream's): whether the peer was unavailable. Then the
        channel is dropped, unless another call dropped it first (the next call dials
        and verifies again); calls in flight on it go on."""
        if error.code() != grpc.StatusCode.UNAVAILABLE:
            return False
        with self._lock:
            if self._channel is channel:
                self._retire()
        return True

    def _retire(self) -> None:
        """Keep the current channel (if any) until the next replacement, so the calls in
        flight on it end as the peer answers them; close the one retired before (once
        the calls of :meth:`call` on it have ended)."""
        if self._channel is None:
            return
        if (retired := self._retired) is not None:
            if retired in self._calls:
                self._closing.add(retired)
            else:
                retired.close()
        self._retired, self._channel = self._channel, None

    def reset(self) -> None:
        """Drop the channel (retired, as above); the next call dials again."""
        with self._lock:
            self._retire()

    def close(self) -> None:
        """Close the channels."""
        with self._lock:
            for channel in (self._channel, self._retired, *self._closing):
                if channel is not None:
                    channel.close()
            self._channel = self._retired = None
            self._closing.clear()
