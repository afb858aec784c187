"""Audit entries of frontend calls (reference §2.7), buffered and shipped to management.

Every call gets exactly one entry, or is refused before it is handled (see
:class:`AuditBuffer`); the buffer never drops an entry.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from teaclave.core.errors import Status, TeaclaveError
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.rpc.server import peer_address

log = logging.getLogger(__name__)

CAPACITY = 10_000
BATCH = 1000
WAIT_SECS = 5.0
BACKLOGGED = "audit log is backlogged"
UNKNOWN_IP = bytes(16)


def peer_ip(peer: str) -> bytes:
    """The 16-byte IPv6 address of a gRPC peer string (:func:`peer_address`); else ``::``."""
    address = peer_address(peer)
    return UNKNOWN_IP if address is None else address.packed


MAX_FIELD_CHARS = 1024
"""Longer users and messages are cut: an entry stays small, so a batch always fits a message."""


def entry(ip: bytes, user: str, message: str, result: bool) -> common.Entry:
    """An entry stamped with the current time (microseconds)."""
    return common.Entry(
        microsecond=time.time_ns() // 1000,
        ip=ip,
        user=user[:MAX_FIELD_CHARS],
        message=message[:MAX_FIELD_CHARS],
        result=result,
    )


class AuditSlot:
    """Room for one entry, reserved before a call is handled; filled exactly once."""

    def __init__(self, buffer: AuditBuffer, default: common.Entry) -> None:
        self._buffer = buffer
        self._default = default
        self._filled = False

    def record(self, new: common.Entry) -> None:
        """Fill the slot with the call's entry (only the first one counts)."""
        if not self._filled:
            self._filled = True
            self._buffer._fill(new)

    def __enter__(self) -> AuditSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        """A call that ended without an entry (an unexpected error) is audited by ``default``."""
        self.record(self._default)


class AuditBuffer:
    """Entries waiting to be saved: bounded, never dropped, removed only once saved.

    Room for an entry is reserved before the call is handled; when the buffer is
    full, the caller waits up to ``wait_secs`` for the flusher to make room and is
    otherwise refused UNAVAILABLE "audit log is backlogged" before anything is done.
    Refused calls are counted and reported by an entry once there is room.
    """

    def __init__(
        self,
        send: Callable[[Sequence[common.Entry]], None],
        capacity: int = CAPACITY,
        wait_secs: float = WAIT_SECS,
    ) -> None:
        self._send = send
        self._capacity = capacity
        self._wait_secs = wait_secs
        self._entries: deque[common.Entry] = deque()
        self._reserved = 0
        self._refused = 0
        self._room = threading.Condition()
        self._flushing = threading.Lock()
        self._wake = threading.Event()

    def reserve(self, default: common.Entry) -> AuditSlot:
        """Room for one entry (``default`` if none is recorded); UNAVAILABLE when backlogged."""
        with self._room:
            if not self._room.wait_for(self._has_room, self._wait_secs):
                self._refused += 1
                raise TeaclaveError(Status.UNAVAILABLE, BACKLOGGED)
            self._reserved += 1
        return AuditSlot(self, default)

    def add(self, new: common.Entry) -> None:
        """Buffer one entry (waiting for room as :meth:`reserve` does)."""
        self.reserve(new).record(new)

    def flush(self) -> bool:
        """Send what is buffered, in batches; each leaves the buffer once saved. Whether all was."""
        with self._flushing:
            with self._room:
                remaining = len(self._entries)
            while remaining > 0:
                with self._room:
                    batch = list(itertools.islice(self._entries, min(BATCH, remaining)))
                try:
                    self._send(batch)
                except TeaclaveError as exc:
                    log.warning("cannot save audit entries (will retry): %s", exc.message)
                    return False
                with self._room:
                    for _ in batch:
                        self._entries.popleft()
                    self._note_refused()
                    self._room.notify_all()
                remaining -= len(batch)
            return True

    def run(self, stop: threading.Event, interval: float) -> None:
        """Flush every ``interval`` seconds, or sooner when a batch is waiting, until ``stop``."""
        while not stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if not self.flush():
                stop.wait(interval)

    def _has_room(self) -> bool:
        return len(self._entries) + self._reserved < self._capacity

    def _fill(self, new: common.Entry) -> None:
        with self._room:
            self._reserved -= 1
            self._entries.append(new)
            if len(self._entries) >= BATCH:
                self._wake.set()

    def _note_refused(self) -> None:
        """An entry for the calls refused while backlogged, if there is room (lock held)."""
        if self._refused and self._has_room():
            message = f"audit log backlogged: {self._refused} calls refused unaudited"
            log.warning(message)
            self._entries.append(entry(UNKNOWN_IP, "", message, False))
            self._refused = 0
