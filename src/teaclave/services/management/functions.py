"""Functions, their usage counters and users' function lists (reference §3.3, §4.3)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from teaclave.core.errors import TeaclaveError, invalid_argument, permission_denied
from teaclave.core.model import Function, FunctionUsage, UserFunctions
from teaclave.core.tasks import is_allow_listed
from teaclave.services.management.common import Caller, Txn, transact
from teaclave.storage import keys
from teaclave.storage.api import Store


def invalid_function_id() -> TeaclaveError:
    """INVALID_ARGUMENT "invalid function id"."""
    return invalid_argument("invalid function id")


def load_function(txn: Txn, function_uuid: str) -> Function:
    """A function record; INVALID_ARGUMENT "invalid function id" if absent."""
    return txn.load(Function, keys.FUNCTION + function_uuid, invalid_function_id())


def load_usage(txn: Txn, function_uuid: str) -> FunctionUsage:
    """A function's usage counter (zero if it has none)."""
    found = txn.find(FunctionUsage, keys.USAGE + function_uuid)
    return found or FunctionUsage(function_uuid)


def _link(txn: Txn, user_ids: Iterable[str], function_uuid: str, *, field: str, add: bool) -> None:
    """Add ``function_uuid`` to (or remove it from) a list of each user's record."""
    for user_id in user_ids:
        key = keys.USER_FUNCTIONS + user_id
        record = txn.find(UserFunctions, key) or UserFunctions(user_id)
        kept = tuple(f for f in getattr(record, field) if f != function_uuid)
        changes: dict[str, Any] = {field: (*kept, function_uuid) if add else kept}
        txn.put(key, replace(record, **changes))


def _link_all(txn: Txn, function: Function, *, add: bool) -> None:
    _link(txn, [function.owner], function.uuid, field="registered", add=add)
    _link(txn, function.user_allowlist, function.uuid, field="allowed", add=add)


def _owned(txn: Txn, caller: Caller, function_uuid: str, *, admin_too: bool = False) -> Function:
    function = load_function(txn, function_uuid)
    if function.owner != caller.user_id and not (admin_too and caller.role.is_admin):
        raise permission_denied("permission denied: not the function's owner")
    return function


def register_function(store: Store, function: Function) -> None:
    """Store a new function (owned by ``function.owner``) with a zero usage counter."""

    def body(txn: Txn) -> None:
        txn.put(keys.FUNCTION + function.uuid, function)
        txn.put(keys.USAGE + function.uuid, FunctionUsage(function.uuid))
        _link_all(txn, function, add=True)

    transact(store, body)


def _may_read(function: Function, caller: Caller) -> bool:
    return function.public or caller.role.is_admin or function.owner == caller.user_id


def get_function(store: Store, caller: Caller, function_uuid: str) -> Function:
    """A function as the caller may see it: allow-listed users get no payload or allow-list."""
    function = transact(store, lambda txn: load_function(txn, function_uuid))
    if _may_read(function, caller):
        return function
    if is_allow_listed(function, caller.user_id, caller.role):
        return replace(function, payload=b"", user_allowlist=())
    raise permission_denied("permission denied: function is private and not shared with you")


def usage_stats(store: Store, caller: Caller, function_uuid: str) -> tuple[int, int]:
    """``(quota or -1, current usage)`` for whoever may read or use the function."""

    def body(txn: Txn) -> tuple[Function, FunctionUsage]:
        return load_function(txn, function_uuid), load_usage(txn, function_uuid)

    function, usage = transact(store, body)
    if not (_may_read(function, caller) or is_allow_listed(function, caller.user_id, caller.role)):
        raise permission_denied("permission denied: function is private and not shared with you")
    quota = -1 if function.usage_quota is None else function.usage_quota
    return quota, usage.use_numbers


def update_function(store: Store, caller: Caller, function: Function) -> None:
    """Replace a function (same id and owner), updating users' allowed lists."""

    def body(txn: Txn) -> None:
        old = _owned(txn, caller, function.uuid)
        if old.disabled:
            raise permission_denied("permission denied: function is disabled")
        new = replace(function, owner=old.owner)
        txn.put(keys.FUNCTION + new.uuid, new)
        removed = set(old.user_allowlist) - set(new.user_allowlist)
        _link(txn, sorted(removed), new.uuid, field="allowed", add=False)
        _link(txn, new.user_allowlist, new.uuid, field="allowed", add=True)

    transact(store, body)


def list_functions(store: Store, caller: Caller, user_id: str) -> tuple[list[str], list[str]]:
    """``(registered, allowed)`` function uuids of ``user_id`` (admins: allowed = all)."""
    if user_id != caller.user_id and not caller.role.is_admin:
        raise permission_denied("permission denied: can only list your own functions")
    record = transact(
        store, lambda txn: txn.find(UserFunctions, keys.USER_FUNCTIONS + user_id)
    ) or UserFunctions(user_id)
    allowed = list(record.allowed)
    if caller.role.is_admin:
        allowed = [r.key.removeprefix(keys.FUNCTION) for r in store.scan(keys.FUNCTION)]
    return list(record.registered), allowed


def delete_function(store: Store, caller: Caller, function_uuid: str) -> None:
    """Delete a function, its usage counter and its entries in users' lists."""

    def body(txn: Txn) -> None:
        function = _owned(txn, caller, function_uuid)
        txn.delete(keys.FUNCTION + function_uuid)
        txn.delete(keys.USAGE + function_uuid)
        _link_all(txn, function, add=False)

    transact(store, body)


def disable_function(store: Store, caller: Caller, function_uuid: str) -> None:
    """Disable a function: no new tasks, unlisted, allow-list cleared; the record stays."""

    def body(txn: Txn) -> None:
        function = _owned(txn, caller, function_uuid, admin_too=True)
        _link_all(txn, function, add=False)
        txn.put(keys.FUNCTION + function_uuid, replace(function, user_allowlist=(), disabled=True))

    transact(store, body)
