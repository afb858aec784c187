"""The frontend: one path for every public call, built from the service descriptor.

Each ``TeaclaveFrontend`` RPC is (1) authenticated by the authentication
service, (2) authorized by access control, (3) forwarded unchanged to the
same-named ``TeaclaveManagement`` RPC with the caller's id and role from the
token, and (4) audited (reference §1.2, §2.6, §2.7). No RPC has its own handler,
so none can skip a step. Room for the audit entry is reserved before step (1):
a call is audited whatever its outcome, or refused UNAVAILABLE untouched.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from teaclave.core.access import RULES
from teaclave.core.apis import SAFE_TO_REPEAT, WAITS_SECS, api_name
from teaclave.core.auditlog import audit_user
from teaclave.core.errors import Status, TeaclaveError, permission_denied, unauthenticated
from teaclave.proto import teaclave_access_control_service_pb2 as acs
from teaclave.proto import teaclave_authentication_service_pb2 as auth
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_management_service_pb2 as mgmt
from teaclave.rpc.channel import Peer
from teaclave.services.frontend.audit import AuditBuffer, AuditSlot, entry, peer_ip

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

FRONTEND = fe.DESCRIPTOR.services_by_name["TeaclaveFrontend"]
MANAGEMENT = mgmt.DESCRIPTOR.services_by_name["TeaclaveManagement"]
AUTHENTICATE = auth.DESCRIPTOR.services_by_name["TeaclaveAuthenticationInternal"].methods_by_name[
    "UserAuthenticate"
]
AUTHORIZE = acs.DESCRIPTOR.services_by_name["TeaclaveAccessControl"].methods_by_name["AuthorizeApi"]
SAVE_LOGS = MANAGEMENT.methods_by_name["SaveLogs"]
CALL_TIMEOUT_SECS = 30.0
CREDENTIAL_REFUSED = frozenset({Status.UNAUTHENTICATED, Status.INVALID_ARGUMENT})
"""The authentication service's answers that refuse a credential (an id or token it cannot
accept); every other failure of the call is an outage."""
MAX_DECISIONS = 1024
"""Most access-control decisions remembered (roles x APIs are far fewer)."""
_STATUSES = {int(s) for s in Status}


def rpc_path(method: MethodDescriptor) -> str:
    """The gRPC path of ``method``: ``/<package>.<Service>/<Method>``."""
    return f"/{method.containing_service.full_name}/{method.name}"


def status_of(error: grpc.RpcError) -> TeaclaveError:
    """A failed call's status and message, as a :class:`TeaclaveError`."""
    code: grpc.StatusCode = error.code()
    number = code.value[0]
    details: str = error.details() or ""
    return TeaclaveError(Status(number) if number in _STATUSES else Status.UNKNOWN, details)


def unary(
    peer: Peer,
    method: MethodDescriptor,
    request: Message,
    response_type: type[M],
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    timeout: float = CALL_TIMEOUT_SECS,
    repeatable: bool = True,
) -> M:
    """Call ``method`` on ``peer``; failures as :class:`TeaclaveError` with the peer's status.

    ``repeatable``: the call may be sent again on a fresh channel if the peer was
    unavailable (only for calls that change nothing).
    """

    def call(channel: grpc.Channel) -> M:
        stub = channel.unary_unary(
            rpc_path(method),
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        response: M = stub(request, metadata=metadata, timeout=timeout)
        return response

    try:
        return peer.call(call, repeatable=repeatable)
    except grpc.RpcError as exc:
        raise status_of(exc) from None


def save_logs(management: Peer, entries: Sequence[common.Entry]) -> None:
    """Store audit entries with the management service."""
    unary(
        management,
        SAVE_LOGS,
        mgmt.SaveLogsRequest(logs=entries),
        mgmt.SaveLogsResponse,
        repeatable=False,
    )


@dataclass(frozen=True)
class Route:
    """One public RPC: its access-control name, its management counterpart and how long
    the forwarded call may take (longer for the calls that wait)."""

    api: str
    target: MethodDescriptor
    request_type: type[Message]
    response_type: type[Message]
    timeout: float = CALL_TIMEOUT_SECS


def routes() -> dict[str, Route]:
    """Every frontend RPC by name, checked to have an access rule and a management twin
    with the same messages."""
    table = {}
    for method in FRONTEND.methods:
        api = api_name(method.name)
        if api not in RULES:
            raise RuntimeError(f"no access rule for {method.full_name}")
        target = MANAGEMENT.methods_by_name.get(method.name)
        if target is None or (target.input_type, target.output_type) != (
            method.input_type,
            method.output_type,
        ):
            raise RuntimeError(f"TeaclaveManagement has no twin of {method.full_name}")
        table[method.name] = Route(
            api,
            target,
            GetMessageClass(method.input_type),
            GetMessageClass(method.output_type),
            CALL_TIMEOUT_SECS + WAITS_SECS.get(api, 0.0),
        )
    return table


class Frontend:
    """The ``TeaclaveFrontend`` service."""

    def __init__(
        self, authentication: Peer, access_control: Peer, management: Peer, audit: AuditBuffer
    ) -> None:
        self._authentication = authentication
        self._access_control = access_control
        self._management = management
        self._audit = audit
        self._decisions: dict[tuple[str, str], bool] = {}

    def handler(self) -> grpc.GenericRpcHandler[Message, Message]:
        """Handlers for all RPCs of the service descriptor, each through :meth:`_handle`."""
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                functools.partial(self._handle, route),
                request_deserializer=route.request_type.FromString,
                response_serializer=route.response_type.SerializeToString,
            )
            for name, route in routes().items()
        }
        return grpc.method_handlers_generic_handler(FRONTEND.full_name, handlers)

    def register(self, server: grpc.Server) -> None:
        """Add the service to ``server``."""
        server.add_generic_rpc_handlers((self.handler(),))

    def _handle(self, route: Route, request: Message, context: grpc.ServicerContext) -> Message:
        ip = peer_ip(context.peer())
        # Room for the entry first: a backlogged audit log refuses the call before it is handled.
        with self._audit.reserve(entry(ip, "", f"{route.api}: internal error", False)) as audit:
            return self._audited(route, request, context, ip, audit)

    def _audited(
        self,
        route: Route,
        request: Message,
        context: grpc.ServicerContext,
        ip: bytes,
        audit: AuditSlot,
    ) -> Message:
        try:
            claims = self._authenticate(context)
        except TeaclaveError as exc:
            audit.record(entry(ip, "", f"authenticate to {route.api}: {exc.message}", False))
            raise
        user = audit_user(claims.sub, claims.role)
        try:
            allowed = self._authorize(claims.role, route.api)
        except TeaclaveError as exc:
            audit.record(entry(ip, user, f"authenticate to {route.api}: {exc.message}", False))
            raise
        if not allowed:
            # Unlike Teaclave (empty user), the audit names who was denied.
            audit.record(entry(ip, user, f"authenticate to {route.api}", False))
            raise permission_denied()
        timeout = min(context.time_remaining() or route.timeout, route.timeout)
        metadata = (("id", claims.sub), ("role", claims.role))
        try:
            response = unary(
                self._management,
                route.target,
                request,
                route.response_type,
                metadata=metadata,
                timeout=timeout,
                repeatable=route.api in SAFE_TO_REPEAT,
            )
        except TeaclaveError as exc:
            audit.record(entry(ip, user, f"{route.api}:{exc.message}", False))
            raise
        audit.record(entry(ip, user, route.api, True))
        return response

    def _authenticate(self, context: grpc.ServicerContext) -> auth.UserAuthClaims:
        metadata = dict(context.invocation_metadata())
        user_id, token = metadata.get("id"), metadata.get("token")
        if user_id is None:
            raise unauthenticated("missing user id")
        if token is None:
            raise unauthenticated("missing token")
        request = auth.UserAuthenticateRequest(
            credential=common.UserCredential(id=str(user_id), token=str(token))
        )
        try:
            response = unary(
                self._authentication, AUTHENTICATE, request, auth.UserAuthenticateResponse
            )
        except TeaclaveError as exc:
            # Only the authentication service's verdict on the credential is a bad
            # credential; any other failure (down, restarting, overloaded, out of time,
            # refused as a peer) is an outage: UNAVAILABLE, which callers retry.
            if exc.status not in CREDENTIAL_REFUSED:
                log.warning("authentication service failed (%s): %s", exc.status.name, exc.message)
                raise TeaclaveError(Status.UNAVAILABLE, "service temporarily unavailable") from None
            raise unauthenticated("incorrent credential") from None  # (sic), as Teaclave
        return response.claims

    def _authorize(self, role: str, api: str) -> bool:
        """Access control's decision on ``role`` calling ``api``, asked once per pair: the
        decision is a pure function of the two (:func:`teaclave.core.access.authorize_api`,
        attested code), so the answer stands for the life of this service."""
        question = (role.partition("-")[0], api)
        if (known := self._decisions.get(question)) is not None:
            return known
        request = acs.AuthorizeApiRequest(user_role=question[0], api=api)
        try:
            response = unary(self._access_control, AUTHORIZE, request, acs.AuthorizeApiResponse)
        except TeaclaveError as exc:
            log.warning("access control failed, denying: %s", exc.message)
            if exc.status is Status.UNAVAILABLE:  # still denied, but say why
                raise TeaclaveError(Status.UNAVAILABLE, "service temporarily unavailable") from None
            return False
        if len(self._decisions) < MAX_DECISIONS:
            self._decisions[question] = response.accept
        return response.accept
