"""Optimistic transactions: first reads from the records the management service remembers."""

from collections.abc import Sequence
from pathlib import Path

import pytest

from teaclave.core.codec import decode, encode
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.model import FunctionUsage
from teaclave.services.management.common import Remembered, Txn, transact
from teaclave.storage.api import Changes, Record, Write
from teaclave.storage.sqlite import SqliteStore

KEY = "task/t"
"""Holds a FunctionUsage: a record whose number tells the versions apart."""


class Reads:
    """The store, recording the keys each read asked for."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.asked: list[list[str]] = []

    def get(self, keys: Sequence[str]) -> list[Record]:
        self.asked.append(list(keys))
        return self.store.get(keys)

    def commit(self, checks: Sequence[tuple[str, int]], writes: Sequence[Write]) -> int:
        return self.store.commit(checks, writes)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "db", sealing_key=bytes(32))


@pytest.fixture
def reads(store: SqliteStore) -> Reads:
    return Reads(store)


def usage(number: int) -> bytes:
    return encode(FunctionUsage("f", number))


def put(store: SqliteStore, number: int) -> int:
    return store.commit([], [Write(KEY, usage(number))])


def stored(store: SqliteStore) -> int:
    return decode(FunctionUsage, store.get([KEY])[0].value).use_numbers


def number(txn: Txn) -> int:
    return txn.load(FunctionUsage, KEY, TeaclaveError(Status.NOT_FOUND, "no task")).use_numbers


def increment(txn: Txn) -> int:
    """Read the number and write it plus one: a commit that checks what it read."""
    found = number(txn)
    txn.put(KEY, FunctionUsage("f", found + 1))
    return found


def test_a_transaction_remembers_the_records_of_the_task_path_it_read_or_wrote(
    reads: Reads,
) -> None:
    remembered = Remembered()
    function_version = reads.store.commit([], [Write("function/f", b"a function")])
    txn = Txn(reads, remembered)  # type: ignore[arg-type]
    txn.prefetch(["function/f"])
    txn.put_bytes(KEY, usage(1))
    txn.put_bytes("input/i", b"not on the task path")
    txn.commit()
    assert remembered.get(KEY) == (usage(1), reads.store.get([KEY])[0].version)
    assert remembered.get("function/f") == (b"a function", function_version)
    assert remembered.get("input/i") is None


def test_an_optimistic_transaction_reads_nothing_it_remembers(reads: Reads) -> None:
    remembered = Remembered()
    remembered.saw({KEY: usage(1)}, put(reads.store, 1))
    assert transact(reads, increment, remembered, optimistic=True) == 1  # type: ignore[arg-type]
    assert reads.asked == []
    assert stored(reads.store) == 2
    assert transact(reads, increment, remembered) == 2  # type: ignore[arg-type]
    assert reads.asked == [[KEY]]  # not optimistic: it reads


def test_a_record_out_of_date_costs_a_second_attempt_on_storage(reads: Reads) -> None:
    remembered = Remembered()
    remembered.saw({KEY: usage(1)}, put(reads.store, 1))
    put(reads.store, 5)  # by another service: not seen here
    assert transact(reads, increment, remembered, optimistic=True) == 5  # type: ignore[arg-type]
    assert reads.asked == [[KEY]]
    assert stored(reads.store) == 6


def test_a_failure_decided_on_a_remembered_record_is_decided_again_on_storage(
    reads: Reads,
) -> None:
    remembered = Remembered()
    remembered.saw({KEY: usage(0)}, put(reads.store, 0))
    put(reads.store, 1)  # approved, by another service

    def invoke(txn: Txn) -> str:  # refuses an unapproved task, else stages it
        if (found := number(txn)) == 0:
            raise TeaclaveError(Status.FAILED_PRECONDITION, "not approved")
        txn.put(KEY, FunctionUsage("f", found))
        return "invoked"

    assert transact(reads, invoke, remembered, optimistic=True) == "invoked"  # type: ignore[arg-type]
    put(reads.store, 0)  # on storage too now: the refusal stands
    with pytest.raises(TeaclaveError, match="not approved"):
        transact(reads, invoke, remembered, optimistic=True)  # type: ignore[arg-type]


def test_the_watch_keeps_the_newest_version_and_a_loss_forgets_all() -> None:
    remembered = Remembered()
    remembered.saw({KEY: b"v5"}, 5)
    remembered.changed(Changes(9, (KEY,), records=(Record(KEY, b"v3", 3),)))  # sent before
    assert remembered.get(KEY) == (b"v5", 5)
    remembered.changed(Changes(9, (KEY,), records=(Record(KEY, b"v7", 7),)))
    assert remembered.get(KEY) == (b"v7", 7)
    remembered.changed(Changes(9, (KEY,), records=(Record(KEY, b"", 0),)))  # deleted
    assert remembered.get(KEY) is None  # (storage reads it at version 0: nothing to keep)
    remembered.saw({KEY: b"v8"}, 8)
    remembered.changed(Changes(10, lost=True))
    assert remembered.get(KEY) is None


def test_at_most_so_many_records_are_remembered() -> None:
    remembered = Remembered(size=2)
    for version, key in enumerate(["task/a", "task/b", "task/c"], 1):
        remembered.saw({key: b""}, version)
    assert [remembered.get(k) is None for k in ("task/a", "task/b", "task/c")] == [
        True,
        False,
        False,
    ]
