"""gRPC servers on RA-TLS, with the peer check and error translation built in.

Every unary handler of a server started here runs behind one guard that
(1) on internal endpoints verifies the caller's client-certificate evidence
against the endpoint's allow-list of peer services, and (2) turns a
:class:`TeaclaveError` into its gRPC status and message, and anything else
into INTERNAL "service internal error" (details only in the log).
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from teaclave.attestation.evidence import AttestationError, AttestationPolicy
from teaclave.attestation.peer import verify_peer
from teaclave.core.errors import Status, TeaclaveError
from teaclave.rpc.identity import ServiceIdentity

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


VERDICT_CACHE_SECS = 300.0
"""A verdict on a client certificate is reused this long, then the evidence is checked again
(so evidence that has grown too old is refused within this time)."""


class _PeerCheck:
    """Verifies client-certificate evidence, caching verdicts per certificate for a while."""

    def __init__(self, peers: frozenset[str], policy: AttestationPolicy) -> None:
        self._peers = peers
        self._policy = policy
        self._cache: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def service_of(self, context: grpc.ServicerContext) -> str:
        pems = context.auth_context().get("x509_pem_cert")
        if not isinstance(pems, list) or not pems:
            raise AttestationError("no client certificate")
        pem = bytes(pems[0])
        now = time.monotonic()
        with self._lock:
            service, verified = self._cache.get(pem, ("", -math.inf))
        if now - verified < VERDICT_CACHE_SECS:
            return service
        verdict = verify_peer(
            x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER),
            services=self._peers,
            policy=self._policy,
            now=datetime.now(UTC),
        )
        with self._lock:
            self._cache[pem] = (verdict.service, now)
        return verdict.service


class _Guard(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, name: str, check: _PeerCheck | None) -> None:
        self._name = name
        self._check = check

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = details.method

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            failure: TeaclaveError
            try:
                token = _peer_service.set(self._check.service_of(context) if self._check else "")
                try:
                    return inner(request, context)
                finally:
                    _peer_service.reset(token)
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
            return None

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def start_server(
    identity: ServiceIdentity,
    bind: str,
    register: Callable[[grpc.Server], None],
    *,
    peers: frozenset[str] | None,
    policy: AttestationPolicy,
    max_message_bytes: int,
    max_workers: int = 16,
) -> grpc.Server:
    """Start a server on ``bind`` (``host:port``) and return it.

    ``peers`` None: a public endpoint (server-authenticated RA-TLS only).
    Otherwise: mutual RA-TLS; only the named peer services may call.
    """
    check = None if peers is None else _PeerCheck(peers, policy)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=identity.service),
        interceptors=[_Guard(identity.service, check)],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    register(server)
    credentials = grpc.ssl_server_credentials(
        [(identity.key_pem, identity.server_cert_pem)],
        root_certificates=identity.platform_ca_pem if peers is not None else None,
        require_client_auth=peers is not None,
    )
    if server.add_secure_port(bind, credentials) == 0:
        raise TeaclaveError(Status.UNAVAILABLE, f"cannot listen on {bind}")
    server.start()
    return server
