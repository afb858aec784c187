"""The audit log: a hash chain of the entries the frontend saves, with signed checkpoints.

Entries are appended to the chain (:mod:`teaclave.core.auditlog`) in the store:
records under ``audit/log/<seq>``, the head (last sequence number and hash, last
checkpoint) under ``audit/head``. Every append is one conditional commit on the
head, so concurrent savers (threads or processes) never fork the chain: a loser
re-reads the head and appends after the winner. A :class:`Checkpointer` signs
the committed (hence durable) head every :data:`CHECKPOINT_ENTRIES` entries or
:data:`CHECKPOINT_SECS` seconds with the management service's attested key.

Queries (reference §2.7): PlatformAdmins see every entry; anyone else only the
entries about themselves.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from teaclave.core import auditlog
from teaclave.core.auditlog import AuditEntry, Checkpoint, CheckpointSigner, Head, Record
from teaclave.core.errors import TeaclaveError, invalid_argument
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.services.management.common import Caller, Txn, transact
from teaclave.storage import keys
from teaclave.storage.api import Store

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
SAVE_BATCH = 500
SCAN_PAGE = 500
CHECKPOINT_ENTRIES = 1000
"""Sign the head once this many entries are unsigned …"""
CHECKPOINT_SECS = 60.0
"""… or once this long has passed since the last checkpoint (and something is unsigned)."""
CHECKPOINT_POLL_SECS = 1.0

Predicate = Callable[[AuditEntry], bool]

_APPEND_LOCK = threading.Lock()
"""Serializes this process's writers (fewer retries); the conditional commits keep
writers in different processes from forking the chain."""


def to_core(entry: common.Entry) -> AuditEntry:
    """The chain's form of a protobuf entry."""
    return AuditEntry(entry.microsecond, entry.ip, entry.user, entry.message, entry.result)


def to_proto(entry: AuditEntry) -> common.Entry:
    """The protobuf form of a chain entry."""
    return common.Entry(
        microsecond=entry.microsecond,
        ip=entry.ip,
        user=entry.user,
        message=entry.message,
        result=entry.result,
    )


def _head(txn: Txn) -> Head:
    return txn.find(Head, keys.AUDIT_HEAD) or Head()


def append(store: Store, entries: Sequence[AuditEntry]) -> Head:
    """Append ``entries`` in one conditional commit (retried on conflicts); the new head."""

    def body(txn: Txn) -> Head:
        head, records = auditlog.append(_head(txn), entries)
        for record in records:
            txn.put_bytes(keys.audit_key(keys.AUDIT_LOG, record.seq), auditlog.record_json(record))
        txn.put(keys.AUDIT_HEAD, head)
        return head

    return transact(store, body)


def save_logs(store: Store, entries: Sequence[common.Entry]) -> None:
    """Append every entry, in order (in batches, each one commit); returns once durable."""
    with _APPEND_LOCK:
        for start in range(0, len(entries), SAVE_BATCH):
            append(store, [to_core(e) for e in entries[start : start + SAVE_BATCH]])


class Checkpointer:
    """Signs the chain's head when enough entries or time have passed since the last checkpoint.

    ``signer`` gives the signer of the moment: the instance's attested key and certificate
    are renewed as their evidence ages, and a checkpoint must carry fresh evidence.
    """

    def __init__(
        self,
        store: Store,
        signer: Callable[[], CheckpointSigner],
        *,
        every: int = CHECKPOINT_ENTRIES,
        interval_secs: float = CHECKPOINT_SECS,
        clock: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self._store = store
        self._signer = signer
        self._every = every
        self._interval_us = int(interval_secs * 1_000_000)
        self._clock = clock

    def checkpoint(self, *, force: bool = False) -> Checkpoint | None:
        """Sign the head if due (``force``: if anything is unsigned); the new checkpoint."""

        def body(txn: Txn) -> Checkpoint | None:
            head, now = _head(txn), self._clock()
            unsigned = head.seq - head.checkpoint_seq
            due = unsigned >= self._every or now - head.checkpoint_time >= self._interval_us
            if unsigned <= 0 or not (due or force):
                return None
            made = self._signer().sign(head.seq, head.hash, now)
            txn.put_bytes(
                keys.audit_key(keys.AUDIT_CHECKPOINT, head.seq), auditlog.checkpoint_json(made)
            )
            txn.put(keys.AUDIT_HEAD, Head(head.seq, head.hash, head.seq, now))
            return made

        with _APPEND_LOCK:
            return transact(self._store, body)

    def run(self, stop: threading.Event, poll_secs: float = CHECKPOINT_POLL_SECS) -> None:
        """Checkpoint when due until ``stop`` is set, then once more for the last entries."""
        while not stop.wait(poll_secs):
            self._try(force=False)
        self._try(force=True)

    def _try(self, *, force: bool) -> None:
        try:
            self.checkpoint(force=force)
        except TeaclaveError as exc:
            log.warning("cannot write an audit checkpoint (will retry): %s", exc.message)


# --- reading ---------------------------------------------------------------------------------


def _scan(store: Store, prefix: str) -> Iterator[bytes]:
    start_after = ""
    while page := store.scan(prefix, start_after=start_after, limit=SCAN_PAGE):
        yield from (record.value for record in page)
        start_after = page[-1].key


def records(store: Store) -> Iterator[Record]:
    """The chain's records in sequence order."""
    for value in _scan(store, keys.AUDIT_LOG):
        record = auditlog.parse_line(value)
        if not isinstance(record, Record):
            raise auditlog.LogFormatError("a checkpoint is stored among the records")
        yield record


def export_lines(store: Store) -> Iterator[bytes]:
    """The log as stored, one JSON line each: every record in order, then every checkpoint."""
    yield from _scan(store, keys.AUDIT_LOG)
    yield from _scan(store, keys.AUDIT_CHECKPOINT)


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
    """The newest ``limit`` entries (0: 100) matching ``query``, newest first.

    A PlatformAdmin sees all entries, anyone else only those about themselves.
    """
    predicates = parse_query(query)
    if not caller.role.is_admin:
        predicates.append(lambda e: auditlog.is_about(e.user, caller.user_id))
    matching = (r for r in records(store) if all(p(r.entry) for p in predicates))
    newest = heapq.nlargest(
        min(limit or DEFAULT_LIMIT, MAX_LIMIT),
        matching,
        key=lambda r: (r.entry.microsecond, r.seq),
    )
    return [to_proto(r.entry) for r in newest]
