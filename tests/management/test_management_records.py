"""Management records: transactions with retry, JSON and proto round trips (§10.2)."""

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from teaclave.config import ExecutionConfig
from teaclave.core import tasks
from teaclave.core.codec import decode, encode
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.model import (
    CryptoSchema,
    FileCrypto,
    Function,
    FunctionUsage,
    InputFile,
    OutputFile,
    Task,
    TaskResult,
)
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.services.management.common import COMMIT_ATTEMPTS, Txn, transact
from teaclave.services.management.convert import function_from_request, staged_task
from teaclave.storage.api import Conflict, Record, Write
from teaclave.storage.sqlite import SqliteStore

GCM = FileCrypto(CryptoSchema.AES_GCM_128, bytes(16), bytes(12))


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "db", sealing_key=bytes(32))


def _request(**fields: object) -> fe.RegisterFunctionRequest:
    return fe.RegisterFunctionRequest(executor_type="builtin", **fields)


@pytest.mark.parametrize(("quota", "expected"), [(-1, None), (-5, None), (0, 0), (5, 5)])
def test_quota_normalisation(quota: int, expected: int | None) -> None:
    assert function_from_request(_request(usage_quota=quota), "u", "o").usage_quota == expected


def test_transact_rereads_after_a_conflict(store: SqliteStore) -> None:
    key = "usage/f"
    store.commit([], [Write(key, encode(FunctionUsage("f", 1)))])
    seen: list[int] = []

    def increment(txn: Txn) -> int:
        usage = txn.load(FunctionUsage, key, TeaclaveError(Status.NOT_FOUND, "gone"))
        if not seen:  # another writer commits between our read and our commit
            store.commit([], [Write(key, encode(FunctionUsage("f", 10)))])
        seen.append(usage.use_numbers)
        txn.put(key, replace(usage, use_numbers=usage.use_numbers + 1))
        return usage.use_numbers + 1

    assert transact(store, increment) == 11
    assert seen == [1, 10]
    assert decode(FunctionUsage, store.get([key])[0].value).use_numbers == 11


def test_transact_gives_up_eventually(store: SqliteStore) -> None:
    def always_conflicting(txn: Txn) -> None:
        txn.find(InputFile, "input/x")
        store.commit([], [Write("input/x", encode(_input()))])
        txn.put("input/x", _input())

    with pytest.raises(TeaclaveError) as caught:
        transact(store, always_conflicting)
    assert caught.value.status is Status.ABORTED
    assert store.get(["input/x"])[0].version == COMMIT_ATTEMPTS


def _input() -> InputFile:
    return InputFile("i", "file:///i", bytes(16), GCM, frozenset({"a", "b"}))


def test_txn_reads_its_own_writes(store: SqliteStore) -> None:
    txn = Txn(store)
    assert txn.find(InputFile, "input/i") is None
    txn.put("input/i", _input())
    assert txn.find(InputFile, "input/i") == _input()
    txn.delete("input/i")
    assert txn.find(InputFile, "input/i") is None


class CountingStore(SqliteStore):
    """A real store that records the keys of each ``get``."""

    gets: list[list[str]]

    def get(self, keys: Sequence[str]) -> list[Record]:
        self.gets.append(list(keys))
        return super().get(keys)


def test_txn_prefetches_in_one_read_and_checks_what_it_read(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "db", sealing_key=bytes(32))
    store.gets = []
    store.commit([], [Write("input/i", encode(_input()))])
    txn = Txn(store)
    txn.put("input/w", _input())
    txn.prefetch(["input/i", "input/absent", "input/w", "input/i"])
    txn.prefetch(["input/i"])  # read already: no round trip
    assert store.gets == [["input/i", "input/absent"]]  # not the key written
    assert txn.find(InputFile, "input/i") == _input()
    assert txn.find(InputFile, "input/absent") is None
    assert len(store.gets) == 1
    store.commit([], [Write("input/absent", encode(_input()))])  # a concurrent writer
    with pytest.raises(Conflict):  # what was prefetched (absent) is a check of the commit
        txn.commit()


def test_record_round_trips() -> None:
    function = function_from_request(
        _request(
            name="f",
            payload=b"\x00\xff",
            arguments=[fe.FunctionArgument(key="k", default_value="1", allow_overwrite=True)],
            inputs=[fe.FunctionInput(name="in", optional=True)],
            outputs=[fe.FunctionOutput(name="out")],
            user_allowlist=["b", "a", "b"],
            usage_quota=3,
        ),
        "u",
        "o",
    )
    assert function.user_allowlist == ("b", "a")
    output = OutputFile("o", "s3://b/o", GCM, frozenset({"a"}))
    task = tasks.create_task(
        task_uuid="t",
        function=function,
        creator="a",
        executor="builtin",
        arguments='{"k": [1, 2.5, null]}',
        inputs_ownership=[("in", ["a", "b"])],
        outputs_ownership=[("out", ["a"])],
        max_limits=ExecutionConfig().max_limits(),
    )
    task = tasks.assign_data(task, [("in", _input())], [("out", output)])
    finished = replace(task, result=TaskResult.success(b"ok", {"out": bytes(16)}, ("line",)))
    for record, cls in (
        (function, Function),
        (_input(), InputFile),
        (output, OutputFile),
        (replace(output, cmac=bytes(range(16))), OutputFile),
        (finished, Task),
    ):
        assert decode(cls, encode(record)) == record
    staged = staged_task(task, function, "a")
    assert type(staged).FromString(staged.SerializeToString()) == staged
    assert staged.function_arguments == '{"k":[1,2.5,null]}'
