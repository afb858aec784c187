"""gRPC servers on RA-TLS, with the peer check and error translation built in.

Every handler (unary or server-streaming; methods that take a request stream
are not served) of a server started here runs behind one guard that
(1) on internal endpoints verifies the caller's client-certificate evidence
against the endpoint's allow-list of peer services, and (2) turns a
:class:`TeaclaveError` into its gRPC status and message, and anything else
into INTERNAL "service internal error" (details only in the log). Each call
is also counted, timed and traced (:func:`teaclave.observability.calls.observing`).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import datetime, timedelta
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from teaclave.attestation.evidence import AttestationError, AttestationPolicy
from teaclave.attestation.peer import RECHECK_SECS, verify_peer
from teaclave.config import SERVER_THREADS
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.iterators import stepped
from teaclave.observability import calls
from teaclave.rpc.identity import Clock, IdentitySource, ServiceIdentity, utc_now

log = logging.getLogger(__name__)

_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}
MAX_MESSAGE_CHARS = 1024
_peer_service: contextvars.ContextVar[str] = contextvars.ContextVar("peer_service", default="")


def grpc_code(status: Status) -> grpc.StatusCode:
    """The gRPC status code for ``status``."""
    return _GRPC_CODES[int(status)]


def peer_service() -> str:
    """The attested service name of the current call's peer ('' on public endpoints)."""
    return _peer_service.get()


def peer_address(peer: str) -> ipaddress.IPv6Address | None:
    """The IP address of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``), if any.

    IPv4 addresses become IPv4-mapped IPv6 (``::ffff:1.2.3.4``); the port and an
    IPv6 zone are dropped.
    """
    kind, _, address = urllib.parse.unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    host = address.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    return ip


class _PeerCheck:
    """Verifies client-certificate evidence, relying on a verdict for :data:`RECHECK_SECS`."""

    def __init__(self, peers: frozenset[str], policy: AttestationPolicy, clock: Clock) -> None:
        self._peers = peers
        self._policy = policy
        self._clock = clock
        self._cache: dict[bytes, tuple[str, datetime]] = {}
        self._lock = threading.Lock()

    def service_of(self, context: grpc.ServicerContext) -> str:
        pems = context.auth_context().get("x509_pem_cert")
        if not isinstance(pems, list) or not pems:
            raise AttestationError("no client certificate")
        pem = bytes(pems[0])
        now = self._clock()
        with self._lock:
            cached = self._cache.get(pem)
        if cached is not None and _recent(cached[1], now):
            return cached[0]
        verdict = verify_peer(
            x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER),
            services=self._peers,
            policy=self._policy,
            now=now,
        )
        with self._lock:  # peers renew their certificates: forget the verdicts gone stale
            self._cache = {k: v for k, v in self._cache.items() if _recent(v[1], now)}
            self._cache[pem] = (verdict.service, now)
        return verdict.service


def _recent(verified: datetime, now: datetime) -> bool:
    return timedelta(0) <= now - verified < timedelta(seconds=RECHECK_SECS)


class _Certificates:
    """The server certificate of the current identity, handed to gRPC at each new connection."""

    def __init__(self, identity: IdentitySource, mutual: bool) -> None:
        self._identity = identity
        self._mutual = mutual
        self._served = identity()
        self._lock = threading.Lock()
        self.initial = self._configuration(self._served)

    def _configuration(self, identity: ServiceIdentity) -> Any:
        return grpc.ssl_server_certificate_configuration(
            [(identity.key_pem, identity.server_cert_pem)],
            root_certificates=identity.platform_ca_pem if self._mutual else None,
        )

    def __call__(self) -> Any:
        """The configuration of a renewed identity, or None: keep the current one."""
        try:
            current = self._identity()
        except Exception:  # never fail a handshake here: the current certificate serves on
            log.exception("%s: cannot get the current identity", self._served.service)
            return None
        with self._lock:
            if current is self._served:
                return None
            self._served = current
        return self._configuration(current)


@contextlib.contextmanager
def _as_peer(service: str) -> Iterator[None]:
    """Within the block, :func:`peer_service` is ``service``."""
    token = _peer_service.set(service)
    try:
        yield
    finally:
        _peer_service.reset(token)


class _Guard(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Puts every unary and server-streaming handler behind the peer check and the error
    translation, observed (:mod:`teaclave.observability.calls`). Methods that take a
    request stream are not served (UNIMPLEMENTED): none may bypass the guard."""

    def __init__(self, name: str, check: _PeerCheck | None) -> None:
        self._name = name
        self._check = check
        self._guarded: dict[str, Any] = {}  # method -> its guarded handler (methods are fixed)

    @contextlib.contextmanager
    def _guarding(self, method: str, context: grpc.ServicerContext) -> Iterator[str]:
        """The caller's attested service ('' on a public endpoint), for the block; a
        refused peer or an error in the block aborts the call with its status."""
        failure: TeaclaveError
        try:
            yield self._check.service_of(context) if self._check else ""
            return
        except TeaclaveError as exc:
            failure = exc
            if isinstance(exc, AttestationError):
                log.warning("%s %s: refused peer: %s", self._name, method, exc.reason)
                failure = TeaclaveError(Status.PERMISSION_DENIED, exc.message)
        except Exception:
            log.exception("%s %s: unexpected error", self._name, method)
            failure = TeaclaveError(Status.INTERNAL, "service internal error")
        # Messages may echo request fields: keep them well inside gRPC's metadata limit.
        context.abort(grpc_code(failure.status), failure.message[:MAX_MESSAGE_CHARS])

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        method = details.method
        if (known := self._guarded.get(method)) is not None:
            return known
        handler = continuation(details)
        if handler is None or handler.request_streaming:
            return None
        guarded = self._guard(method, handler)
        self._guarded[method] = guarded
        return guarded

    def _guard(self, method: str, handler: Any) -> Any:
        """``handler`` of ``method`` behind the guard."""
        public = self._check is None
        if handler.unary_stream is not None:
            stream = handler.unary_stream

            def guarded_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with self._guarding(method, context) as peer:
                    yield from stepped(lambda: stream(request, context), lambda: _as_peer(peer))

            return grpc.unary_stream_rpc_method_handler(
                calls.observing_stream(self._name, method, guarded_stream, public=public),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        unary = handler.unary_unary

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            with self._guarding(method, context) as peer, _as_peer(peer):
                return unary(request, context)
            return None  # aborted

        return grpc.unary_unary_rpc_method_handler(
            calls.observing(self._name, method, guarded, public=public),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def start_server(
    identity: IdentitySource,
    bind: str,
    register: Callable[[grpc.Server], None],
    *,
    peers: frozenset[str] | None,
    policy: AttestationPolicy,
    max_message_bytes: int,
    max_workers: int = SERVER_THREADS,
    clock: Clock = utc_now,
) -> grpc.Server:
    """Start a server on ``bind`` (``host:port``) and return it.

    ``peers`` None: a public endpoint (server-authenticated RA-TLS only).
    Otherwise: mutual RA-TLS; only the named peer services may call.
    Each new connection gets the certificate of the identity current then
    (``identity`` renews it); ``clock`` dates the peers' evidence checks.
    """
    certificates = _Certificates(identity, mutual=peers is not None)
    service = identity().service
    check = None if peers is None else _PeerCheck(peers, policy, clock)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=service),
        interceptors=[_Guard(service, check)],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    register(server)
    credentials = grpc.dynamic_ssl_server_credentials(
        certificates.initial, certificates, require_client_authentication=peers is not None
    )
    if server.add_secure_port(bind, credentials) == 0:
        raise TeaclaveError(Status.UNAVAILABLE, f"cannot listen on {bind}")
    server.start()
    return server
