"""A task's log (reference §9.3): what its function printed or logged, if the task asks.

A task asks with the argument ``"save_log": "true"`` (a JSON string, as in Teaclave;
the function still gets the pair in its argv). The log is a list of entries, kept in
order up to a number of entries and of UTF-8 bytes (:class:`LogLimits`); an entry is
cut at :data:`MAX_ENTRY_BYTES`, and what does not fit is counted and named by a last
marker entry. The sandboxed side keeps its own :class:`TaskLog` (so its memory and
what it sends stay bounded) and the trusted side bounds again what arrives.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

SAVE_LOG = "save_log"
"""The argument that asks for the log (its value must be the string "true")."""
MAX_ENTRY_BYTES = 4096
"""The longest entry, in UTF-8 bytes (cut longer, ending with :data:`CUT`)."""
CUT = " [… cut]"
"""The end of an entry that was cut."""


def requested(arguments: str) -> bool:
    """Whether the task's JSON arguments hold ``"save_log": "true"`` (a JSON true does not)."""
    try:
        raw = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return False
    return isinstance(raw, dict) and raw.get(SAVE_LOG) == "true"


@dataclass(frozen=True)
class LogLimits:
    """How much of a task's log is kept: entries and their UTF-8 bytes in all."""

    max_lines: int
    max_bytes: int


def _cut(entry: str) -> str:
    """``entry`` as valid UTF-8 text of at most :data:`MAX_ENTRY_BYTES` bytes."""
    encoded = entry.encode("utf-8", "replace")  # lone surrogates become "?"
    if len(encoded) <= MAX_ENTRY_BYTES:
        return encoded.decode()
    kept = encoded[: MAX_ENTRY_BYTES - len(CUT.encode())]
    return kept.decode("utf-8", "ignore") + CUT


class TaskLog:
    """A task's log entries, in order, within ``limits``; then only a count of the rest."""

    def __init__(self, limits: LogLimits) -> None:
        self.limits = limits
        self._entries: list[str] = []
        self._bytes = 0
        self.skipped = 0
        """Entries not kept: beyond the limits, or counted by :meth:`skip`."""

    def add(self, entry: str) -> None:
        """Keep ``entry`` (cut if too long) if it and all before it fit, else count it."""
        entry = _cut(entry)
        size = len(entry.encode())
        full = len(self._entries) >= self.limits.max_lines
        if self.skipped or full or self._bytes + size > self.limits.max_bytes:
            self.skipped += 1
            return
        self._entries.append(entry)
        self._bytes += size

    def skip(self, count: int) -> None:
        """Count ``count`` entries that were not kept."""
        self.skipped += count

    @property
    def kept(self) -> list[str]:
        """The entries kept, without the marker."""
        return list(self._entries)

    def entries(self) -> list[str]:
        """The entries kept, and a marker naming how many were not, if any were not."""
        if not self.skipped:
            return self.kept
        limits = self.limits
        marker = (
            f"[teaclave] log truncated: {self.skipped} more entries not kept "
            f"(at most {limits.max_lines} entries, {limits.max_bytes} bytes)"
        )
        return [*self._entries, marker]


class LineWriter:
    """A stream's text, split into lines, each a log entry (a line too long is cut)."""

    def __init__(self, log: TaskLog) -> None:
        self._log = log
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, text: str) -> int:
        """Add every line ``text`` completes; keep the rest for the next write."""
        *lines, rest = (self._partial + text).split("\n")
        for line in lines:
            self._log.add(line)
        self._partial = rest[: MAX_ENTRY_BYTES + 1]  # enough to be cut when it ends
        return len(text)

    def feed(self, data: bytes) -> None:
        """:meth:`write` for a byte stream (UTF-8, invalid bytes replaced)."""
        self.write(self._decoder.decode(data))

    def flush(self) -> None:
        """Add the last line, if the stream did not end with a newline."""
        self.write(self._decoder.decode(b"", final=True))
        if self._partial:
            self._log.add(self._partial)
            self._partial = ""


class LogHandler(logging.Handler):
    """Adds each record to a task's log as ``[LEVEL logger] message`` (Teaclave's form)."""

    def __init__(self, log: TaskLog) -> None:
        super().__init__()
        self._log = log
        self.setFormatter(logging.Formatter("[%(levelname)s %(name)s] %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.add(self.format(record))
        except Exception:  # a record that cannot be formatted
            self.handleError(record)


@contextlib.contextmanager
def capture(name: str, log: TaskLog | None) -> Iterator[None]:
    """Inside: records of logger ``name`` (INFO and up) go to ``log`` if given, and never
    on to the process's own handlers (they may hold task data)."""
    logger = logging.getLogger(name)
    saved = logger.propagate, logger.level
    handler = logging.NullHandler() if log is None else LogHandler(log)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved[0]
        logger.setLevel(saved[1])
