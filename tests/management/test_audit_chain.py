"""The audit chain in the store: concurrent savers never fork it; checkpoints verify."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from mgmt_helpers import UserFactory
from waiting import wait_until

from teaclave.config import Config
from teaclave.core import auditlog
from teaclave.core.auditlog import CheckpointSigner, Head, pinned, verify_chain
from teaclave.core.codec import decode
from teaclave.core.roles import Role
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_management_service_pb2 as mgmt
from teaclave.services.base import ServiceEnv
from teaclave.services.management import audit
from teaclave.services.management.common import Caller
from teaclave.services.storage import DB_FILE
from teaclave.storage import keys
from teaclave.storage.sealing import load_or_create_sealing_key
from teaclave.storage.sqlite import SqliteStore

SEALING_KEY = bytes(32)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def signer(config: Config) -> CheckpointSigner:
    """Signs as a management instance would (its attested identity)."""
    identity = ServiceEnv.create(config, "management").identity
    return CheckpointSigner(identity.key_pem, identity.server_cert_pem)


def logged(store: SqliteStore) -> tuple[list[auditlog.Record], list[auditlog.Checkpoint]]:
    return auditlog.parse_log(audit.export_lines(store))


def messages(count: int, tag: str) -> list[common.Entry]:
    return [common.Entry(microsecond=i, message=f"{tag}{i}", result=True) for i in range(count)]


def test_concurrent_savers_never_fork_the_chain(db: Path) -> None:
    """Threads with their own connections, bypassing the in-process lock: commits decide."""
    stores = [SqliteStore(db, SEALING_KEY) for _ in range(4)]

    def saver(n: int) -> None:
        for start in range(0, 40, 4):
            batch = messages(40, f"t{n}-")[start : start + 4]
            audit.append(stores[n], [audit.to_core(e) for e in batch])

    threads = [threading.Thread(target=saver, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records, _ = logged(stores[0])
    assert [r.seq for r in records] == list(range(1, 161))
    assert sorted(r.entry.message for r in records) == sorted(
        e.message for n in range(4) for e in messages(40, f"t{n}-")
    )
    for n in range(4):  # each saver's entries in its own order
        mine = [r.entry.message for r in records if r.entry.message.startswith(f"t{n}-")]
        assert mine == [e.message for e in messages(40, f"t{n}-")]
    assert verify_chain(records, [], pinned([])).valid
    [head] = stores[0].get([keys.AUDIT_HEAD])
    assert head.exists
    for store in stores:
        store.close()


def test_checkpoints_by_count_and_by_time(db: Path, signer: CheckpointSigner) -> None:
    store = SqliteStore(db, SEALING_KEY)
    now = [1_000_000_000]
    checkpointer = audit.Checkpointer(
        store, lambda: signer, every=5, interval_secs=60, clock=lambda: now[0]
    )
    assert checkpointer.checkpoint() is None  # nothing to sign
    audit.save_logs(store, messages(3, "a"))
    assert checkpointer.checkpoint() is not None  # the first is due at once
    audit.save_logs(store, messages(4, "b"))
    assert checkpointer.checkpoint() is None  # 4 unsigned, 0 s
    audit.save_logs(store, messages(1, "c"))
    made = checkpointer.checkpoint()
    assert made is not None
    assert made.seq == 8
    audit.save_logs(store, messages(1, "d"))
    now[0] += 59_000_000
    assert checkpointer.checkpoint() is None
    now[0] += 1_000_000
    assert checkpointer.checkpoint() is not None
    audit.save_logs(store, messages(1, "e"))
    assert checkpointer.checkpoint(force=True) is not None
    records, checkpoints = logged(store)
    assert [c.seq for c in checkpoints] == [3, 8, 9, 10]
    report = verify_chain(records, checkpoints, pinned([signer.sign(0, bytes(32), 0).certificate]))
    assert report.valid
    assert report.signed_through == 10
    store.close()


def test_each_checkpoint_is_signed_by_the_identity_of_its_moment(
    db: Path, signer: CheckpointSigner, config: Config
) -> None:
    """After the instance renewed its key and certificate, checkpoints carry the new ones."""
    renewed = ServiceEnv.create(config, "management").identity
    current = [signer]
    checkpointer = audit.Checkpointer(SqliteStore(db, SEALING_KEY), lambda: current[0], every=1)
    store = SqliteStore(db, SEALING_KEY)
    audit.save_logs(store, messages(1, "before"))
    checkpointer.checkpoint()
    current[0] = CheckpointSigner(renewed.key_pem, renewed.server_cert_pem)
    audit.save_logs(store, messages(1, "after"))
    checkpointer.checkpoint()
    records, checkpoints = logged(store)
    first, second = (c.certificate for c in checkpoints)
    assert first == signer.sign(0, bytes(32), 0).certificate
    assert second == current[0].sign(0, bytes(32), 0).certificate != first
    assert verify_chain(records, checkpoints, pinned([first, second])).signed_through == 2
    store.close()


def test_a_checkpoint_races_appends_without_forking(db: Path, signer: CheckpointSigner) -> None:
    store, other = SqliteStore(db, SEALING_KEY), SqliteStore(db, SEALING_KEY)
    checkpointer = audit.Checkpointer(other, lambda: signer, every=1)
    stop = threading.Event()

    def checkpoints() -> None:
        while not stop.is_set():
            checkpointer.checkpoint()

    thread = threading.Thread(target=checkpoints)
    thread.start()
    for start in range(0, 60, 3):
        audit.append(store, [audit.to_core(e) for e in messages(60, "x")[start : start + 3]])
    stop.set()
    thread.join()
    checkpointer.checkpoint(force=True)
    records, made = logged(store)
    assert len(records) == 60
    report = verify_chain(records, made, pinned([made[0].certificate]))
    assert report.valid
    assert report.signed_through == 60
    store.close()
    other.close()


ALICE = auditlog.audit_user("alice", "DataOwner-x")


def test_others_query_only_entries_about_themselves(db: Path) -> None:
    store = SqliteStore(db, SEALING_KEY)
    saved = [
        common.Entry(microsecond=1, user=ALICE, message="register_input_file", result=True),
        common.Entry(microsecond=2, user=auditlog.audit_user("bob", "FunctionOwner"), message="x"),
        common.Entry(microsecond=3, user=ALICE, message="create_task", result=True),
        common.Entry(microsecond=4, user="", message="authenticate to get_task", result=False),
        common.Entry(microsecond=5, user=auditlog.audit_user("alice, role: x", "FunctionOwner")),
    ]
    audit.save_logs(store, saved)

    def query(user_id: str, role: str, text: str = "") -> list[int]:
        caller = Caller(user_id, Role.parse(role))
        return [e.microsecond for e in audit.query_audit_logs(store, caller, text, 0)]

    assert query("alice", "DataOwner-x") == [3, 1]
    assert query("alice", "DataOwner-x", "create_task") == [3]
    assert query("bob", "FunctionOwner") == [2]
    assert query("ali", "DataOwner-x") == []
    assert query("root", "PlatformAdmin") == [5, 4, 3, 2, 1]
    store.close()


def test_the_service_chains_saved_entries_and_signs_them(config: Config, user: UserFactory) -> None:
    anonymous = user(None, None)
    threads = [
        threading.Thread(
            target=lambda n=n: anonymous.SaveLogs(mgmt.SaveLogsRequest(logs=messages(30, f"s{n}")))
        )
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    data = config.data_path
    store = SqliteStore(data / DB_FILE, load_or_create_sealing_key(data))
    # The first checkpoint is due at once; the checkpointer polls every second.
    wait_until(lambda: (found := logged(store)[1]) and found[-1].seq == 120, "the checkpoint")
    records, checkpoints = logged(store)
    assert [r.seq for r in records] == list(range(1, 121))
    report = verify_chain(records, checkpoints, pinned([checkpoints[0].certificate]))
    assert report.valid
    assert report.signed_through == 120
    store.close()


def test_the_head_is_a_record_of_the_store(db: Path) -> None:
    store = SqliteStore(db, SEALING_KEY)
    audit.save_logs(store, messages(2, "h"))
    [record] = store.get([keys.AUDIT_HEAD])
    head = decode(Head, record.value)
    records, _ = logged(store)
    assert (head.seq, head.hash) == (2, records[-1].hash)
    store.close()
