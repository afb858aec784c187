"""The storage servicer: the versioned key/value API, each peer confined to its namespaces."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import grpc

from teaclave.core.errors import Status, TeaclaveError, invalid_argument, permission_denied
from teaclave.core.waiting import wait_secs
from teaclave.proto import teaclave_storage_service_pb2 as pb
from teaclave.proto import teaclave_storage_service_pb2_grpc as pb_grpc
from teaclave.rpc.server import peer_service
from teaclave.storage import keys
from teaclave.storage.api import Record, Write
from teaclave.storage.changes import ChangeLog
from teaclave.storage.sqlite import SqliteStore

MAX_ITEMS = 1000
"""Most keys per Get, checks or writes per Commit, prefixes per Watch, records per Scan page."""
MAX_KEY_CHARS = 1024
MAX_WRITER_CHARS = 128
"""Longest writer name of a Commit or Watch (a client's id: a store client sends 32)."""
MAX_WATCH_SECS = 60.0
"""Longest life of one Watch stream (the watcher then opens another)."""


def _check_count(what: str, count: int) -> None:
    if count > MAX_ITEMS:
        raise invalid_argument(f"too many {what}: {count} (at most {MAX_ITEMS})")


def _check_keys(names: Iterable[str], what: str = "key") -> None:
    """INVALID_ARGUMENT for a malformed key; PERMISSION_DENIED outside the peer's namespaces."""
    peer = peer_service()
    for key in names:
        if not key:
            raise invalid_argument(f"empty {what}")
        if len(key) > MAX_KEY_CHARS:
            raise invalid_argument(f"{what} longer than {MAX_KEY_CHARS} characters")
        if not keys.allowed(peer, key):
            raise permission_denied(f"{peer or 'caller'} may not access key {key!r}")


def _writer(name: str) -> str:
    """A writer named by the calling peer, as the change log knows it: only the peer's own
    commits can be left out of its watches. INVALID_ARGUMENT for a name too long."""
    if len(name) > MAX_WRITER_CHARS:
        raise invalid_argument(f"writer longer than {MAX_WRITER_CHARS} characters")
    return f"{peer_service()}/{name}" if name else ""


def _message(record: Record) -> pb.Record:
    return pb.Record(key=record.key, value=record.value, version=record.version)


class StorageServicer(pb_grpc.TeaclaveStorageServicer):
    """Serves the database's store and the log of its ``changes``; pages are cut at
    ``page_bytes`` of values; at most ``max_watches`` Watch streams are open at once
    (each holds one of the server's threads)."""

    def __init__(
        self, store: SqliteStore, page_bytes: int, changes: ChangeLog, *, max_watches: int
    ) -> None:
        self._store = store
        self._page_bytes = page_bytes
        self._changes = changes
        self._max_watches = max_watches
        self._watches = threading.BoundedSemaphore(max_watches)

    def Get(  # noqa: N802
        self, request: pb.GetRequest, context: grpc.ServicerContext
    ) -> pb.GetResponse:
        _check_count("keys", len(request.keys))
        _check_keys(request.keys)
        records = self._store.get(list(request.keys))
        return pb.GetResponse(records=[_message(r) for r in records])

    def Scan(  # noqa: N802
        self, request: pb.ScanRequest, context: grpc.ServicerContext
    ) -> pb.ScanResponse:
        _check_keys([request.prefix], what="prefix")
        limit = min(request.limit or MAX_ITEMS, MAX_ITEMS)
        records = self._store.scan(request.prefix, start_after=request.start_after, limit=limit)
        page: list[pb.Record] = []
        size = 0
        for record in records:
            size += len(record.key) + len(record.value)
            if page and size > self._page_bytes:
                break
            page.append(_message(record))
        return pb.ScanResponse(records=page)

    def Commit(  # noqa: N802
        self, request: pb.CommitRequest, context: grpc.ServicerContext
    ) -> pb.CommitResponse:
        _check_count("checks", len(request.checks))
        _check_count("writes", len(request.writes))
        _check_keys([c.key for c in request.checks] + [w.key for w in request.writes])
        version = self._store.commit(
            [(c.key, c.version) for c in request.checks],
            [Write(w.key, None if w.delete else w.value) for w in request.writes],
            writer=_writer(request.writer),
        )
        return pb.CommitResponse(version=version)

    def Watch(  # noqa: N802
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchResponse]:
        if not request.prefixes:
            raise invalid_argument("no prefix to watch")
        _check_count("prefixes", len(request.prefixes))
        _check_keys(request.prefixes, what="prefix")
        if not self._watches.acquire(blocking=False):
            raise TeaclaveError(
                Status.RESOURCE_EXHAUSTED,
                f"too many watches open (at most {self._max_watches}); try again later",
            )
        try:
            lifetime = wait_secs(request.timeout_ms, MAX_WATCH_SECS, context.time_remaining())
            watch = self._changes.watch(
                list(request.prefixes),
                request.since,
                lifetime,
                unless_writer=_writer(request.unless_writer),
            )
            if not context.add_callback(watch.cancel):  # a caller gone ends the stream
                return  # gone already
            for changes in watch:
                records = (
                    self._store.get(changes.keys) if request.with_values and changes.keys else []
                )
                yield pb.WatchResponse(
                    version=changes.version,
                    keys=changes.keys,
                    lost=changes.lost,
                    records=[_message(r) for r in records],
                )
        finally:
            self._watches.release()
