"""The SQLite storage backend: versioned, sealed records in one WAL database.

Every write runs in a ``BEGIN IMMEDIATE`` transaction (the write lock is taken
up front, so concurrent writers queue on the busy timeout instead of failing
a lock upgrade), with ``synchronous=FULL``: an acknowledged commit survives a
crash. Versions come from one persisted counter, so they never repeat, not
even for a key deleted and created again. Each commit is published, in version
order, to the store's :class:`~teaclave.storage.changes.ChangeLog` (watchers
see the commits of this store object only: the storage service is the
database's sole owner).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from teaclave.storage.api import Conflict, Record, Write
from teaclave.storage.changes import ChangeLog
from teaclave.storage.sealing import Sealer

BUSY_TIMEOUT_SECS = 30.0
_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records ("
    " key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counter ("
    " id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO counter (id, version) VALUES (0, 0)",
)


def prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (None: no bound)."""
    chars = list(prefix)
    while chars and ord(chars[-1]) == _MAX_CHAR:
        chars.pop()
    if not chars:
        return None
    nxt = ord(chars[-1]) + 1
    chars[-1] = chr(_SURROGATES.stop if nxt in _SURROGATES else nxt)
    return "".join(chars)


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL, waiting for other openers: SQLite's busy handler does not cover it."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECS
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SqliteStore:
    """A :class:`~teaclave.storage.api.Store` in a SQLite file; thread-safe."""

    def __init__(self, path: Path, sealing_key: bytes) -> None:
        self._sealer = Sealer(sealing_key)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_SECS, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECS * 1000)}")
        _enable_wal(self._db)
        self._db.execute("PRAGMA synchronous = FULL")
        with self._transaction("BEGIN IMMEDIATE"):
            for statement in _SCHEMA:
                self._db.execute(statement)
            [(version,)] = self._db.execute("SELECT version FROM counter WHERE id = 0").fetchall()
        self.changes = ChangeLog(version)
        """The commits made through this object, for watchers."""

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute(begin)
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _record(self, key: str, value: bytes, version: int) -> Record:
        return Record(key, self._sealer.unseal(key, value), version)

    def get(self, keys: Sequence[str]) -> list[Record]:
        """One record per key, in order (absent keys have version 0)."""
        with self._transaction("BEGIN") as db:
            rows = [
                db.execute("SELECT value, version FROM records WHERE key = ?", (k,)).fetchone()
                for k in keys
            ]
        return [
            self._record(k, row[0], row[1]) if row else Record(k, b"", 0)
            for k, row in zip(keys, rows, strict=True)
        ]

    def scan(self, prefix: str, *, start_after: str = "", limit: int = 0) -> list[Record]:
        """Records whose key starts with ``prefix``, in key order (``limit`` 0: all)."""
        sql = "SELECT key, value, version FROM records WHERE key >= ? AND key > ?"
        params: list[str | int] = [prefix, start_after]
        end = prefix_end(prefix)
        if end is not None:
            sql += " AND key < ?"
            params.append(end)
        sql += " ORDER BY key LIMIT ?"
        params.append(limit if limit > 0 else -1)
        with self._transaction("BEGIN") as db:
            rows = db.execute(sql, params).fetchall()
        return [self._record(k, v, ver) for k, v, ver in rows]

    def count(self, prefix: str) -> int:
        """How many records have a key starting with ``prefix`` (keys only are read)."""
        sql = "SELECT count(*) FROM records WHERE key >= ?"
        params = [prefix]
        end = prefix_end(prefix)
        if end is not None:
            sql += " AND key < ?"
            params.append(end)
        with self._transaction("BEGIN") as db:
            (found,) = db.execute(sql, params).fetchone()
        return int(found)

    def commit(
        self, checks: Sequence[tuple[str, int]], writes: Sequence[Write], *, writer: str = ""
    ) -> int:
        """Apply ``writes`` atomically if every ``(key, version)`` check holds.

        Returns the new version; raises :class:`Conflict` (nothing written) otherwise.
        ``writer``: who commits, as the change log publishes it (watches may leave it out).
        """
        sealed = [
            (w.key, None if w.value is None else self._sealer.seal(w.key, w.value)) for w in writes
        ]
        with self._lock:  # held until published: commits are published in version order
            with self._transaction("BEGIN IMMEDIATE") as db:
                for key, expected in checks:
                    row = db.execute("SELECT version FROM records WHERE key = ?", (key,)).fetchone()
                    if (row[0] if row else 0) != expected:
                        raise Conflict(key)
                [(version,)] = db.execute(
                    "UPDATE counter SET version = version + 1 WHERE id = 0 RETURNING version"
                ).fetchall()
                for key, value in sealed:
                    if value is None:
                        db.execute("DELETE FROM records WHERE key = ?", (key,))
                    else:
                        db.execute(
                            "INSERT INTO records (key, value, version) VALUES (?, ?, ?)"
                            " ON CONFLICT (key) DO UPDATE"
                            " SET value = excluded.value, version = excluded.version",
                            (key, value, version),
                        )
            self.changes.publish(version, [key for key, _ in sealed], writer)
        result: int = version
        return result

    def close(self) -> None:
        """Answer the watchers and close the database."""
        self.changes.close()
        with self._lock:
            self._db.close()
