"""Functions, their usage counters and users' function lists (reference §3.3).

Who may touch a function is the rules' (§4.3, :mod:`teaclave.core.access`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from teaclave.core.access import Facts, FunctionFacts, allow_listed_users
from teaclave.core.errors import TeaclaveError, invalid_argument
from teaclave.core.model import Function, FunctionUsage, UserFunctions
from teaclave.services.management.common import Txn
from teaclave.storage import keys


def invalid_function_id() -> TeaclaveError:
    """INVALID_ARGUMENT "invalid function id"."""
    return invalid_argument("invalid function id")


def load_function(txn: Txn, function_uuid: str) -> Function:
    """A function record; INVALID_ARGUMENT "invalid function id" if absent."""
    return txn.load(Function, keys.FUNCTION + function_uuid, invalid_function_id())


def function_facts(txn: Txn, function_uuid: str) -> Facts:
    """The facts of the rules on one function; INVALID_ARGUMENT if absent."""
    return Facts(function=FunctionFacts.of(load_function(txn, function_uuid)))


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
    _link(txn, allow_listed_users(function.user_allowlist), function.uuid, field="allowed", add=add)


def register_function(txn: Txn, function: Function) -> None:
    """Store a new function (owned by ``function.owner``) with a zero usage counter."""
    txn.put(keys.FUNCTION + function.uuid, function)
    txn.put(keys.USAGE + function.uuid, FunctionUsage(function.uuid))
    _link_all(txn, function, add=True)


def usage_stats(txn: Txn, function_uuid: str) -> tuple[int, int]:
    """``(quota or -1, current usage)`` of a function."""
    function = load_function(txn, function_uuid)
    quota = -1 if function.usage_quota is None else function.usage_quota
    return quota, load_usage(txn, function_uuid).use_numbers


def update_function(txn: Txn, function: Function) -> None:
    """Replace a function (same id and owner), updating users' allowed lists."""
    old = load_function(txn, function.uuid)
    new = replace(function, owner=old.owner)
    txn.put(keys.FUNCTION + new.uuid, new)
    new_users = allow_listed_users(new.user_allowlist)
    removed = set(allow_listed_users(old.user_allowlist)) - set(new_users)
    _link(txn, sorted(removed), new.uuid, field="allowed", add=False)
    _link(txn, new_users, new.uuid, field="allowed", add=True)


def list_functions(txn: Txn, user_id: str, *, all_allowed: bool) -> tuple[list[str], list[str]]:
    """``(registered, allowed)`` function uuids of ``user_id`` (``all_allowed``: every function)."""
    record = txn.find(UserFunctions, keys.USER_FUNCTIONS + user_id) or UserFunctions(user_id)
    allowed = list(record.allowed)
    if all_allowed:
        allowed = [r.key.removeprefix(keys.FUNCTION) for r in txn.store.scan(keys.FUNCTION)]
    return list(record.registered), allowed


def delete_function(txn: Txn, function_uuid: str) -> None:
    """Delete a function, its usage counter and its entries in users' lists."""
    function = load_function(txn, function_uuid)
    txn.delete(keys.FUNCTION + function_uuid)
    txn.delete(keys.USAGE + function_uuid)
    _link_all(txn, function, add=False)


def disable_function(txn: Txn, function_uuid: str) -> None:
    """Disable a function: no new tasks, unlisted, allow-list cleared; the record stays."""
    function = load_function(txn, function_uuid)
    _link_all(txn, function, add=False)
    txn.put(keys.FUNCTION + function_uuid, replace(function, user_allowlist=(), disabled=True))
