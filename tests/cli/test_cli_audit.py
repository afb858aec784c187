"""``teaclave audit export`` and ``verify``: a copy verifies; edits, drops and moves are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_commands import run

from teaclave.config import Config
from teaclave.core.auditlog import CheckpointSigner
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.services.base import ServiceEnv, simulation_key
from teaclave.services.management import audit
from teaclave.services.storage import DB_FILE
from teaclave.storage.sealing import load_or_create_sealing_key
from teaclave.storage.sqlite import SqliteStore


@pytest.fixture
def platform(tmp_path: Path) -> tuple[Path, bytes]:
    """A data directory whose store holds 12 audit entries, checkpointed at 5 and 12,
    signed by a (simulated) attested management instance; and its certificate."""
    data = tmp_path / "platform"
    identity = ServiceEnv.create(Config(data_dir=str(data)), "management").identity
    store = SqliteStore(data / DB_FILE, load_or_create_sealing_key(data))
    signer = CheckpointSigner(identity.key_pem, identity.server_cert_pem)
    checkpointer = audit.Checkpointer(store, lambda: signer, every=5)
    for start, count in ((0, 5), (5, 7)):
        audit.save_logs(
            store,
            [
                common.Entry(
                    microsecond=i, user="{ user: u, role: FunctionOwner }", message=f"m{i}"
                )
                for i in range(start + 1, start + count + 1)
            ],
        )
        checkpointer.checkpoint(force=True)
    store.close()
    return data, identity.server_cert_pem


@pytest.fixture
def exported(
    platform: tuple[Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    out = tmp_path / "audit.jsonl"
    code, text, err = run(
        capsys, "audit", "export", "--data-dir", str(platform[0]), "--out", str(out)
    )
    assert (code, text.strip()) == (0, f"{out}: 12 entries, 2 checkpoints"), err
    assert out.stat().st_mode & 0o777 == 0o600
    return out


def verify(capsys: pytest.CaptureFixture[str], log: Path, *trust: str) -> tuple[int, str]:
    code, out, err = run(capsys, "audit", "verify", str(log), *trust)
    return code, out.strip() or err.strip()


def test_an_exported_copy_verifies(
    platform: tuple[Path, bytes], exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pin = ["--simulation-key", simulation_key(platform[0])]
    assert verify(capsys, exported, *pin) == (0, f"{exported}: valid: 12 entries, 2 checkpoints")
    cert = exported.parent / "management.pem"
    cert.write_bytes(platform[1])
    assert verify(capsys, exported, "--trust", str(cert))[0] == 0
    code, out, _ = run(capsys, "audit", "verify", str(exported), *pin, "--json")
    assert (code, json.loads(out)["signed_through"]) == (0, 12)


def test_an_unpinned_simulated_signer_is_not_trusted(
    exported: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEACLAVE_SIMULATION_KEY", raising=False)
    code, out = verify(capsys, exported)
    assert code == 1
    assert out.startswith(f"{exported}: INVALID: checkpoint at 5: signer not trusted: ")


def _tamper(log: Path, name: str, change: str) -> Path:
    lines = log.read_bytes().splitlines(keepends=True)
    if change == "modify":
        lines[4] = lines[4].replace(b'"message":"m5"', b'"message":"m5 (edited)"')
    elif change == "delete":
        del lines[4]
    elif change == "reorder":
        lines[4], lines[5] = lines[5], lines[4]
    elif change == "truncate":
        lines = lines[:10] + lines[12:]
    copy = log.parent / name
    copy.write_bytes(b"".join(lines))
    return copy


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("modify", "entry 5 was modified"),
        ("delete", "entry 5 is missing (dropped)"),
        ("reorder", "entry 5 is out of order (found after entry 6)"),
        ("truncate", "the log ends at entry 10, before checkpoint 12 (truncated)"),
    ],
)
def test_tampered_copies_are_named(
    platform: tuple[Path, bytes],
    exported: Path,
    capsys: pytest.CaptureFixture[str],
    change: str,
    problem: str,
) -> None:
    copy = _tamper(exported, f"{change}.jsonl", change)
    pin = ["--simulation-key", simulation_key(platform[0])]
    assert verify(capsys, copy, *pin) == (1, f"{copy}: INVALID: {problem}")


def test_unreadable_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "garbage.jsonl"
    log.write_text('{"kind":"entry"}\n')
    code, message = verify(capsys, log)
    assert code == 1
    assert message.startswith(f"teaclave: error: {log}: line 1 is not a record or checkpoint")
    code, message = verify(capsys, tmp_path / "absent.jsonl")
    assert (code, message) == (
        1,
        f"teaclave: error: {tmp_path / 'absent.jsonl'}: No such file or directory",
    )


def test_export_needs_a_platform(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "audit", "export", "--data-dir", str(tmp_path), "--out", "x")
    assert code == 1
    assert "holds no platform database" in err
