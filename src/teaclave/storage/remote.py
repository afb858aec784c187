"""The storage client: :class:`~teaclave.storage.api.Store` over the storage service's gRPC API."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc

from teaclave.core.errors import Status, TeaclaveError
from teaclave.proto import teaclave_storage_service_pb2 as pb
from teaclave.proto import teaclave_storage_service_pb2_grpc as pb_grpc
from teaclave.rpc.channel import Peer
from teaclave.storage.api import Changes, ChangeStream, Conflict, Record, Write

T = TypeVar("T")

CALL_TIMEOUT_SECS = 30.0
SCAN_PAGE = 256
_STATUSES = {int(s) for s in Status}


@contextmanager
def _translated() -> Iterator[None]:
    """Turn gRPC errors into :class:`TeaclaveError` (ABORTED into :class:`Conflict`)."""
    try:
        yield
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        details: str = exc.details() or ""
        number = code.value[0]
        if code == grpc.StatusCode.ABORTED:
            raise Conflict(details.removeprefix("concurrent update of ")) from None
        status = Status(number) if number in _STATUSES else Status.INTERNAL
        raise TeaclaveError(status, details or code.name) from None


def _record(message: pb.Record) -> Record:
    return Record(message.key, message.value, message.version)


class RemoteStore:
    """A store served by the storage service at ``peer``."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self.writer = uuid.uuid4().hex
        """Who this client's commits are of (a watch may leave them out: ``unless_writer``)."""

    def _call(self, fn: Callable[[pb_grpc.TeaclaveStorageStub], T], *, repeatable: bool) -> T:
        with _translated():
            return self._peer.call(
                lambda channel: fn(pb_grpc.TeaclaveStorageStub(channel)),  # type: ignore[no-untyped-call]
                repeatable=repeatable,
            )

    def _scan_page(self, request: pb.ScanRequest) -> pb.ScanResponse:
        response: pb.ScanResponse = self._call(
            lambda stub: stub.Scan(request, timeout=CALL_TIMEOUT_SECS), repeatable=True
        )
        return response

    def get(self, keys: Sequence[str]) -> list[Record]:
        """One record per key, in order (absent keys have version 0); no call for no keys."""
        if not keys:
            return []
        request = pb.GetRequest(keys=keys)
        response = self._call(
            lambda stub: stub.Get(request, timeout=CALL_TIMEOUT_SECS), repeatable=True
        )
        return [_record(r) for r in response.records]

    def scan(self, prefix: str, *, start_after: str = "", limit: int = 0) -> list[Record]:
        """Records whose key starts with ``prefix``, in key order (``limit`` 0: all).

        Fetched in pages; the service may return short pages to bound message sizes.
        """
        records: list[Record] = []
        while limit <= 0 or len(records) < limit:
            want = SCAN_PAGE if limit <= 0 else min(SCAN_PAGE, limit - len(records))
            response = self._scan_page(
                pb.ScanRequest(prefix=prefix, start_after=start_after, limit=want)
            )
            if not response.records:
                break
            records.extend(_record(r) for r in response.records)
            start_after = records[-1].key
        return records

    def commit(self, checks: Sequence[tuple[str, int]], writes: Sequence[Write]) -> int:
        """Apply ``writes`` atomically if every ``(key, version)`` check holds.

        Returns the new version; raises :class:`Conflict` (nothing written) otherwise.
        """
        request = pb.CommitRequest(
            writer=self.writer,
            checks=[pb.Check(key=k, version=v) for k, v in checks],
            writes=[
                pb.Write(key=w.key, delete=True)
                if w.value is None
                else pb.Write(key=w.key, value=w.value)
                for w in writes
            ],
        )
        response = self._call(
            lambda stub: stub.Commit(request, timeout=CALL_TIMEOUT_SECS), repeatable=False
        )
        version: int = response.version
        return version

    def watch(
        self,
        prefixes: Sequence[str],
        since: int,
        lifetime: float,
        *,
        with_values: bool = False,
        unless_writer: str = "",
    ) -> ChangeStream:
        """The changes under ``prefixes`` after version ``since``, as the service streams
        them for about ``lifetime`` seconds (it may end the stream sooner; ``with_values``:
        with the records of their keys; ``unless_writer``: without the commits of that
        :attr:`writer` of this service)."""
        request = pb.WatchRequest(
            prefixes=prefixes,
            since=since,
            timeout_ms=int(lifetime * 1000),
            with_values=with_values,
            unless_writer=unless_writer,
        )
        channel = self._peer.channel()
        stub = pb_grpc.TeaclaveStorageStub(channel)  # type: ignore[no-untyped-call]
        call = stub.Watch(request, timeout=lifetime + CALL_TIMEOUT_SECS)
        return _Watch(self._peer, channel, call)


class _Watch:
    """A Watch stream of the storage service at ``peer``: the call ``call`` on ``channel``."""

    def __init__(self, peer: Peer, channel: grpc.Channel, call: Any) -> None:
        self._peer = peer
        self._channel = channel
        self._call = call

    def __iter__(self) -> Iterator[Changes]:
        with _translated():
            try:
                for message in self._call:
                    records = tuple(_record(r) for r in message.records)
                    yield Changes(message.version, tuple(message.keys), message.lost, records)
            except grpc.RpcError as exc:
                self._peer.failed(exc, self._channel)
                raise

    def cancel(self) -> None:
        """End the stream (its reader gets CANCELLED)."""
        self._call.cancel()
