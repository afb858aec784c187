"""``teaclave enclave-info``: auditors make keys, sign a release, and anyone verifies it."""

import json
from pathlib import Path

import pytest
from test_cli_commands import run

from teaclave.attestation.measure import service_measurement


def keygen(capsys: pytest.CaptureFixture[str], directory: Path, name: str, kind: str) -> str:
    code, out, _ = run(
        capsys, "enclave-info", "keygen", "--out", str(directory / f"{name}.pem"), "--type", kind
    )
    assert code == 0, out
    assert (directory / f"{name}.pem").stat().st_mode & 0o777 == 0o600
    return f"{name}={directory / f'{name}.pub.pem'}"


def test_two_auditors_sign_and_a_threshold_decides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = keygen(capsys, tmp_path, "alice", "ed25519")
    bob = keygen(capsys, tmp_path, "bob", "p384")
    doc = tmp_path / "enclave-info.json"
    code, out, _ = run(
        capsys,
        "enclave-info",
        "sign",
        "--key",
        str(tmp_path / "alice.pem"),
        "--signer",
        "alice",
        "--release",
        "r1",
        "--out",
        str(doc),
    )
    assert (code, out.strip()) == (0, f"{doc}: release r1, signed by alice")
    verify = ["enclave-info", "verify", str(doc), "--auditor", alice, "--auditor", bob]
    code, _, err = run(capsys, *verify, "--auditor-threshold", "2")
    assert code == 1
    assert "1 of the 2 required auditor signatures (valid: alice)" in err
    code, out, _ = run(
        capsys,
        "enclave-info",
        "sign",
        "--key",
        str(tmp_path / "bob.pem"),
        "--signer",
        "bob",
        "--in",
        str(doc),
        "--out",
        str(doc),
    )
    assert code == 0
    assert "signed by alice, bob" in out
    code, out, _ = run(capsys, *verify, "--auditor-threshold", "2", "--json")
    assert code == 0
    listed = json.loads(out)
    assert listed["release"] == "r1"
    assert listed["measurements"]["frontend"] == [service_measurement("frontend").hex()]


def test_a_changed_document_fails_verification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = keygen(capsys, tmp_path, "alice", "p256")
    doc = tmp_path / "enclave-info.json"
    run(
        capsys,
        "enclave-info",
        "sign",
        "--key",
        str(tmp_path / "alice.pem"),
        "--signer",
        "alice",
        "--out",
        str(doc),
    )
    text = doc.read_text()
    doc.write_text(text.replace(service_measurement("storage").hex(), "00" * 32))
    code, _, err = run(capsys, "enclave-info", "verify", str(doc), "--auditor", alice)
    assert code == 1
    assert "signature of auditor 'alice'" in err
    assert "does not verify" in err
