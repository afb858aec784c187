"""The TDX CCEL event log (TCG crypto-agile format) and the RTMR values it replays to.

The log begins with a legacy-format ``Spec ID Event03`` header that lists the
digest algorithms and sizes; each following event carries an MR index (1..4 →
RTMR0..3 in CCEL; 0 is MRTD and is not replayed), a type, one digest per
algorithm and its data. The log ends at the end of the bytes or at a header of
all 0xFF (unused log area) or all zero. Replay: ``RTMR = SHA-384(RTMR ‖ digest)``
from 48 zero bytes, skipping ``EV_NO_ACTION`` events.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

SHA384_ALG_ID = 0x000C
EV_NO_ACTION = 0x00000003
SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
RTMR_COUNT = 4
_MAX_ALGORITHMS = 32


class EventLogError(ValueError):
    """The bytes are not a well-formed CCEL event log; the message says where."""


@dataclass(frozen=True)
class Event:
    """One event: CCEL MR index, event type, digests by TCG algorithm id, event data."""

    mr_index: int
    event_type: int
    digests: dict[int, bytes]
    data: bytes


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int, field: str) -> bytes:
        if self.pos + size > len(self.data):
            raise EventLogError(f"event log truncated at byte {self.pos}: {field}")
        chunk, self.pos = self.data[self.pos : self.pos + size], self.pos + size
        return chunk

    def u32(self, field: str) -> int:
        return int(struct.unpack("<I", self.take(4, field))[0])


def _spec_id(cursor: _Cursor) -> dict[int, int]:
    """The digest sizes by algorithm id, from the legacy-format first event."""
    cursor.take(8, "first event header")
    cursor.take(20, "first event digest")
    spec = _Cursor(cursor.take(cursor.u32("first event size"), "Spec ID event"))
    if spec.take(16, "Spec ID signature") != SPEC_ID_SIGNATURE:
        raise EventLogError("first event is not a 'Spec ID Event03'")
    spec.take(8, "Spec ID version fields")
    count = spec.u32("algorithm count")
    if not 0 < count <= _MAX_ALGORITHMS:
        raise EventLogError(f"Spec ID event lists {count} algorithms")
    sizes = {}
    for _ in range(count):
        alg_id, size = struct.unpack("<HH", spec.take(4, "algorithm entry"))
        sizes[alg_id] = size
    return sizes


def parse_event_log(data: bytes) -> list[Event]:
    """The events after the Spec ID header, up to the end of the log."""
    cursor = _Cursor(bytes(data))
    sizes = _spec_id(cursor)
    events: list[Event] = []
    while cursor.pos + 8 <= len(cursor.data):
        header = cursor.data[cursor.pos : cursor.pos + 8]
        if header in (b"\xff" * 8, b"\0" * 8):
            break
        mr_index, event_type = cursor.u32("MR index"), cursor.u32("event type")
        count = cursor.u32("digest count")
        if count > len(sizes):
            raise EventLogError(f"event {len(events) + 1} has {count} digests")
        digests = {}
        for _ in range(count):
            (alg_id,) = struct.unpack("<H", cursor.take(2, "algorithm id"))
            if alg_id not in sizes:
                raise EventLogError(f"event {len(events) + 1} uses unknown algorithm {alg_id:#x}")
            digests[alg_id] = cursor.take(sizes[alg_id], "digest")
        event_data = cursor.take(cursor.u32("event size"), "event data")
        events.append(Event(mr_index, event_type, digests, event_data))
    return events


def replay_rtmrs(event_log: bytes) -> list[bytes]:
    """RTMR0..3 as the event log's SHA-384 digests extend them."""
    rtmrs = [bytes(48)] * RTMR_COUNT
    for number, event in enumerate(parse_event_log(event_log), 1):
        if event.event_type == EV_NO_ACTION or event.mr_index == 0:
            continue
        if not 1 <= event.mr_index <= RTMR_COUNT:
            raise EventLogError(f"event {number} has MR index {event.mr_index}, not 0..4")
        digest = event.digests.get(SHA384_ALG_ID)
        if digest is None or len(digest) != 48:
            raise EventLogError(f"event {number} has no SHA-384 digest")
        rtmrs[event.mr_index - 1] = hashlib.sha384(rtmrs[event.mr_index - 1] + digest).digest()
    return rtmrs
