"""SqliteStore: the Store contract, sealing at rest, concurrency and durability."""

import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from teaclave.core.errors import Status, TeaclaveError
from teaclave.storage.api import Conflict, Write
from teaclave.storage.sealing import Sealer, load_or_create_sealing_key
from teaclave.storage.sqlite import SqliteStore, prefix_end

KEY = bytes(range(32))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "teaclave.db"


@pytest.fixture
def store(db: Path):
    s = SqliteStore(db, KEY)
    yield s
    s.close()


def test_absent_key_has_version_zero(store: SqliteStore) -> None:
    [record] = store.get(["task/none"])
    assert (record.key, record.value, record.version, record.exists) == (
        "task/none",
        b"",
        0,
        False,
    )


def test_commit_then_get_in_request_order(store: SqliteStore) -> None:
    version = store.commit([("a/1", 0)], [Write("a/1", b"one"), Write("a/2", b"two")])
    records = store.get(["a/2", "a/1", "a/3"])
    assert [(r.key, r.value, r.version) for r in records] == [
        ("a/2", b"two", version),
        ("a/1", b"one", version),
        ("a/3", b"", 0),
    ]


def test_failed_check_raises_conflict_and_writes_nothing(store: SqliteStore) -> None:
    v1 = store.commit([], [Write("a/1", b"one")])
    with pytest.raises(Conflict) as caught:
        store.commit([("a/2", 0), ("a/1", v1 + 5)], [Write("a/1", b"x"), Write("a/2", b"y")])
    assert caught.value.key == "a/1"
    assert caught.value.status is Status.ABORTED
    assert [(r.value, r.version) for r in store.get(["a/1", "a/2"])] == [(b"one", v1), (b"", 0)]
    with pytest.raises(Conflict):
        store.commit([("a/1", 0)], [Write("a/1", b"create again")])


def test_delete_and_versions_never_reused(store: SqliteStore) -> None:
    v1 = store.commit([("k/1", 0)], [Write("k/1", b"v")])
    v2 = store.commit([("k/1", v1)], [Write("k/1", None)])
    assert not store.get(["k/1"])[0].exists
    v3 = store.commit([("k/1", 0)], [Write("k/1", b"again")])
    v4 = store.commit([], [Write("other/1", b"x")])
    assert v1 < v2 < v3 < v4
    assert store.get(["k/1"])[0].version == v3


def test_scan_is_exact_ordered_and_pages(store: SqliteStore) -> None:
    keys = ["task/b", "task/a", "task/c", "task", "task0", "tasks/x", "tas", "t%sk/a", "t_sk/a"]
    store.commit([], [Write(k, k.encode()) for k in keys])
    assert [r.key for r in store.scan("task/")] == ["task/a", "task/b", "task/c"]
    assert [r.value for r in store.scan("task/")] == [b"task/a", b"task/b", b"task/c"]
    assert [r.key for r in store.scan("task/", limit=2)] == ["task/a", "task/b"]
    assert [r.key for r in store.scan("task/", start_after="task/a")] == ["task/b", "task/c"]
    assert [r.key for r in store.scan("t%sk/")] == ["t%sk/a"]
    assert [r.key for r in store.scan("t_sk/")] == ["t_sk/a"]
    assert store.scan("nothing/") == []
    assert len(store.scan("")) == len(keys)


def test_prefix_end() -> None:
    assert prefix_end("task/") == "task0"
    assert prefix_end("") is None
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("a\ud7ff") == "a\ue000"


def test_scan_with_max_code_point(store: SqliteStore) -> None:
    store.commit([], [Write("z\U0010ffff/1", b"1"), Write("z\U0010ffff", b"2"), Write("zz", b"3")])
    assert [r.key for r in store.scan("z\U0010ffff/")] == ["z\U0010ffff/1"]
    assert [r.key for r in store.scan("z\U0010ffff")] == ["z\U0010ffff", "z\U0010ffff/1"]


def test_values_are_sealed_at_rest(db: Path) -> None:
    marker = b"PLAINTEXT-MARKER-4f1c"
    s = SqliteStore(db, KEY)
    s.commit([], [Write("user/alice", marker * 10)])
    raw_while_open = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.is_file())
    s.close()
    raw = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.is_file())
    assert b"user/alice" in raw  # keys are not secret, values are
    assert marker not in raw_while_open
    assert marker not in raw


def test_tampered_or_moved_value_is_corrupt(db: Path) -> None:
    s = SqliteStore(db, KEY)
    s.commit([], [Write("a/1", b"one"), Write("a/2", b"two")])
    raw = sqlite3.connect(db)
    with raw:
        raw.execute(
            "UPDATE records SET value = (SELECT value FROM records WHERE key = 'a/2')"
            " WHERE key = 'a/1'"
        )
    raw.close()
    with pytest.raises(TeaclaveError) as caught:
        s.get(["a/1"])
    assert (caught.value.status, caught.value.message) == (
        Status.INTERNAL,
        "sealed record is corrupt",
    )
    assert s.get(["a/2"])[0].value == b"two"
    s.close()


def test_reopen_keeps_data_and_counter(db: Path) -> None:
    s = SqliteStore(db, KEY)
    v1 = s.commit([], [Write("a/1", b"one")])
    s.close()
    s = SqliteStore(db, KEY)
    assert s.get(["a/1"])[0].value == b"one"
    assert s.commit([], [Write("a/2", b"two")]) > v1
    s.close()
    s = SqliteStore(db, bytes(32))
    with pytest.raises(TeaclaveError, match="sealed record is corrupt"):
        s.get(["a/1"])
    s.close()


_INCREMENT = """
from teaclave.storage.api import Conflict, Write


def increment(store, key, times):
    for _ in range(times):
        while True:
            [record] = store.get([key])
            count = int(record.value or b"0")
            try:
                store.commit([(key, record.version)], [Write(key, str(count + 1).encode())])
                break
            except Conflict:
                continue
"""
_namespace: dict[str, object] = {}
exec(_INCREMENT, _namespace)
_increment = _namespace["increment"]


def test_concurrent_connections_lose_no_update(db: Path) -> None:
    stores = [SqliteStore(db, KEY) for _ in range(3)]
    threads = [threading.Thread(target=_increment, args=(s, "n/counter", 100)) for s in stores * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].get(["n/counter"])[0].value == b"600"
    for s in stores:
        s.close()


_CHILD = (
    _INCREMENT
    + """
import os
import signal
import sys
from pathlib import Path

from teaclave.storage.sqlite import SqliteStore

store = SqliteStore(Path(sys.argv[1]), bytes(range(32)))
increment(store, "n/counter", int(sys.argv[2]))
if sys.argv[3] == "kill":
    print(store.get(["n/counter"])[0].version, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
store.close()
"""
)


def test_concurrent_processes_lose_no_update(db: Path) -> None:
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(db), "150", "close"]) for _ in range(2)
    ]
    assert [c.wait(timeout=120) for c in children] == [0, 0]
    s = SqliteStore(db, KEY)
    assert s.get(["n/counter"])[0].value == b"300"
    s.close()


def test_acknowledged_commit_survives_kill(db: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db), "5", "kill"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -9
    s = SqliteStore(db, KEY)
    [record] = s.get(["n/counter"])
    assert (record.value, record.version) == (b"5", int(child.stdout))
    s.close()


def test_sealing_key_created_once_private(tmp_path: Path) -> None:
    key = load_or_create_sealing_key(tmp_path)
    path = tmp_path / "simulation" / "sealing.key"
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_sealing_key(tmp_path) == key
    assert load_or_create_sealing_key(tmp_path / "other") != key
    assert [p.name for p in path.parent.iterdir()] == ["sealing.key"]


def test_sealing_key_of_wrong_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / "simulation").mkdir()
    (tmp_path / "simulation" / "sealing.key").write_bytes(b"short")
    with pytest.raises(TeaclaveError, match="is not 32 bytes"):
        load_or_create_sealing_key(tmp_path)


def test_sealer_binds_name_and_detects_tampering() -> None:
    sealer = Sealer(KEY)
    blob = sealer.seal("a/1", b"secret")
    assert sealer.unseal("a/1", blob) == b"secret"
    assert sealer.seal("a/1", b"secret") != blob  # fresh nonce
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    for name, bad in [("a/2", blob), ("a/1", flipped), ("a/1", blob[:20]), ("a/1", b"")]:
        with pytest.raises(TeaclaveError) as caught:
            sealer.unseal(name, bad)
        assert caught.value.status is Status.INTERNAL
    with pytest.raises(TeaclaveError):
        Sealer(KEY).unseal("a/1", os.urandom(40))
