"""The audit log: entries saved by the frontend, queried by PlatformAdmins (reference §2.7)."""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Sequence

from teaclave.core.errors import invalid_argument, permission_denied
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.services.management.common import Caller, Txn, transact
from teaclave.storage import keys
from teaclave.storage.api import Store

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
SAVE_BATCH = 500
SCAN_PAGE = 500

Predicate = Callable[[common.Entry], bool]


def entry_key(entry: common.Entry) -> str:
    """A unique key for ``entry`` that sorts in time order."""
    return f"{keys.AUDIT}{max(entry.microsecond, 0):020d}-{secrets.token_hex(8)}"


def save_logs(store: Store, entries: Sequence[common.Entry]) -> None:
    """Store every entry (in batches, each one commit)."""
    for start in range(0, len(entries), SAVE_BATCH):
        batch = entries[start : start + SAVE_BATCH]

        def body(txn: Txn, batch: Sequence[common.Entry] = batch) -> None:
            for entry in batch:
                txn.put_bytes(entry_key(entry), entry.SerializeToString())

        transact(store, body)


def _term(field: str, value: str) -> Predicate:
    if field == "result":
        if value not in ("true", "false"):
            raise invalid_argument(
                f"audit log error, reason: result must be true or false, not {value!r}"
            )
        wanted = value == "true"
        return lambda e: e.result is wanted
    if field not in ("user", "message"):
        raise invalid_argument(f"audit log error, reason: unknown field {field!r}")
    needle = value.lower()
    if field == "user":
        return lambda e: needle in e.user.lower()
    return lambda e: needle in e.message.lower()


def parse_query(query: str) -> list[Predicate]:
    """The conditions of a query: ``user:x``, ``message:x``, ``result:true|false`` or words.

    Words match the message; all conditions must hold. Text matching is
    case-insensitive substring matching.
    """
    predicates = []
    for word in query.split():
        field, sep, value = word.partition(":")
        predicates.append(_term(field, value) if sep else _term("message", word))
    return predicates


def query_audit_logs(store: Store, caller: Caller, query: str, limit: int) -> list[common.Entry]:
    """The newest ``limit`` entries (0: 100) matching ``query``, newest first."""
    if not caller.role.is_admin:
        raise permission_denied("permission denied: only a PlatformAdmin can query audit logs")
    predicates = parse_query(query)
    newest: deque[common.Entry] = deque(maxlen=min(limit or DEFAULT_LIMIT, MAX_LIMIT))
    start_after = ""
    while page := store.scan(keys.AUDIT, start_after=start_after, limit=SCAN_PAGE):
        for record in page:
            entry = common.Entry.FromString(record.value)
            if all(p(entry) for p in predicates):
                newest.append(entry)
        start_after = page[-1].key
    return list(reversed(newest))
