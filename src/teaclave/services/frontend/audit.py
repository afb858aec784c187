"""Audit entries of frontend calls (reference §2.7), buffered and shipped to management."""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Sequence

from teaclave.core.errors import TeaclaveError
from teaclave.core.roles import Role, RoleKind
from teaclave.proto import teaclave_common_pb2 as common

log = logging.getLogger(__name__)

CAPACITY = 10_000
BATCH = 1000
UNKNOWN_IP = bytes(16)


def peer_ip(peer: str) -> bytes:
    """The 16-byte IPv6 address of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``).

    IPv4 addresses become IPv4-mapped (``::ffff:1.2.3.4``); anything else is ``::``.
    """
    kind, _, address = urllib.parse.unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return UNKNOWN_IP
    host = address.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return UNKNOWN_IP
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed).packed
    return ip.packed


def audit_user(user_id: str, role: str) -> str:
    """Teaclave's rendering of a caller: ``{ user: alice, role: DataOwner("x") }``."""
    parsed = Role.parse(role)
    shown = parsed.kind.value
    if parsed.kind in (RoleKind.DATA_OWNER, RoleKind.DATA_OWNER_MANAGER):
        shown += f"({json.dumps(parsed.attribute, ensure_ascii=False)})"
    return f"{{ user: {user_id}, role: {shown} }}"


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


class AuditBuffer:
    """Entries waiting to be saved; bounded (the oldest are dropped when full)."""

    def __init__(
        self, send: Callable[[Sequence[common.Entry]], None], capacity: int = CAPACITY
    ) -> None:
        self._send = send
        self._capacity = capacity
        self._entries: deque[common.Entry] = deque()
        self._dropped = 0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()

    def add(self, new: common.Entry) -> None:
        """Buffer one entry."""
        with self._lock:
            self._entries.append(new)
            self._trim()

    def flush(self) -> bool:
        """Send everything buffered; on failure keep what was not sent. Whether all was sent."""
        with self._flushing:
            with self._lock:
                pending = list(self._entries)
                self._entries.clear()
                dropped, self._dropped = self._dropped, 0
            if dropped:
                log.warning("audit buffer full: dropped the %d oldest entries", dropped)
            for start in range(0, len(pending), BATCH):
                try:
                    self._send(pending[start : start + BATCH])
                except TeaclaveError as exc:
                    log.warning("cannot save audit entries (will retry): %s", exc.message)
                    with self._lock:
                        self._entries.extendleft(reversed(pending[start:]))
                        self._trim()
                    return False
            return True

    def run(self, stop: threading.Event, interval: float) -> None:
        """Flush every ``interval`` seconds until ``stop`` is set."""
        while not stop.wait(interval):
            self.flush()

    def _trim(self) -> None:
        while len(self._entries) > self._capacity:
            self._entries.popleft()
            self._dropped += 1
