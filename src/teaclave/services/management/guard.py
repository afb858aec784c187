"""The only way to build a management RPC: its body runs after its access decision.

:func:`guarded` turns ``body(servicer, txn, call)`` into a gRPC method for an
API of :data:`~teaclave.core.access.RULES` (no rule: no method). In one
transaction it reads the caller, checks the role, loads the facts the rule
needs, calls :func:`~teaclave.core.access.decide`, and only if allowed runs
the body with the decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import grpc

from teaclave.core.access import RULES, Decision, Facts, Subject, check_role, decide
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.roles import Role
from teaclave.services.management.common import Remembered, Txn, transact
from teaclave.storage.api import Store

Req = TypeVar("Req")
Resp = TypeVar("Resp")
S = TypeVar("S", bound="HasStore")

API_ATTRIBUTE = "__teaclave_api__"
"""Set on every guarded method to the API whose rule it obeys."""


class HasStore(Protocol):
    """A servicer over a store, remembering records it saw."""

    @property
    def store(self) -> Store: ...

    @property
    def remembered(self) -> Remembered: ...


@dataclass(frozen=True)
class Call(Generic[Req]):
    """What a body gets: the request, who asked (None for internal calls), the decision,
    and the seconds left until the caller's deadline (None: it set none)."""

    request: Req
    subject: Subject | None
    decision: Decision
    remaining: float | None = None

    @property
    def caller(self) -> Subject:
        """The subject of a user's call."""
        if self.subject is None:
            raise TeaclaveError(Status.UNKNOWN, "missing user id")
        return self.subject


FactsLoader = Callable[[Txn, Any], Facts]
Body = Callable[[S, Txn, Call[Req]], Resp]
Method = Callable[[S, Req, grpc.ServicerContext], Resp]


def caller_of(context: grpc.ServicerContext) -> Subject:
    """The caller from metadata; UNKNOWN "missing user id/role" without it."""
    metadata = {
        key: value for key, value in context.invocation_metadata() if isinstance(value, str)
    }
    user_id = metadata.get("id")
    if not user_id:
        raise TeaclaveError(Status.UNKNOWN, "missing user id")
    role = metadata.get("role")
    if not role:
        raise TeaclaveError(Status.UNKNOWN, "missing user role")
    return Subject(user_id, Role.parse(role))


def no_facts(_txn: Txn, _request: Any) -> Facts:
    """For rules that look at nothing but the role."""
    return Facts()


def guarded(
    api: str, facts: FactsLoader = no_facts, *, optimistic: bool = False
) -> Callable[[Body[S, Req, Resp]], Method[S, Req, Resp]]:
    """The gRPC method for ``api`` whose ``body`` runs only if the rule allows the call.

    ``optimistic``: the transaction reads remembered records first (see
    :func:`~teaclave.services.management.common.transact`); only for a ``body`` that
    commits what it read, or whose answer stands whatever changed after the version
    it read."""
    rule = RULES[api]

    def wrap(body: Body[S, Req, Resp]) -> Method[S, Req, Resp]:
        def method(servicer: S, request: Req, context: grpc.ServicerContext) -> Resp:
            subject = None if rule.internal else caller_of(context)
            if subject is not None:
                check_role(api, subject)  # before reading anything

            def run(txn: Txn) -> Resp:
                decision = decide(api, subject, facts(txn, request))
                decision.enforce()
                call = Call(request, subject, decision, context.time_remaining())
                return body(servicer, txn, call)

            return transact(servicer.store, run, servicer.remembered, optimistic=optimistic)

        method.__name__ = body.__name__
        method.__doc__ = body.__doc__
        setattr(method, API_ATTRIBUTE, api)
        return method

    return wrap
