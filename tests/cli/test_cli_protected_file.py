"""``teaclave encrypt|decrypt -a teaclave-file-128`` (reference §11.3) and streaming to files."""

import io
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from teaclave_file_fixtures import PROTECTED_FILES
from teaclave_fixtures import FIXTURES

from teaclave.cli.crypto import Progress
from teaclave.cli.main import main

ZERO_KEY = "00" * 16


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def pf(command: str, source: Path, target: Path, *extra: str) -> list[str]:
    files = ["-i", str(source), "-o", str(target)]
    return [command, "-a", "teaclave-file-128", "-k", ZERO_KEY, *files, *extra]


@pytest.mark.parametrize(
    ("fixture", "plaintext", "cmac"), PROTECTED_FILES, ids=lambda v: getattr(v, "name", "")
)
def test_decrypt_fixture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture: Path, plaintext: Path, cmac: bytes
) -> None:
    encrypted = Path(shutil.copy(fixture, tmp_path))  # keeps its name, which is bound into it
    out = tmp_path / "out"
    assert run(capsys, *pf("decrypt", encrypted, out, "--print-cmac")) == (0, cmac.hex() + "\n", "")
    assert out.read_bytes() == plaintext.read_bytes()


def test_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, encrypted, decrypted = tmp_path / "train.txt", tmp_path / "train.enc", tmp_path / "d"
    source.write_bytes((FIXTURES / "functions" / "py_logistic_reg" / "train.txt").read_bytes())
    code, cmac, err = run(capsys, *pf("encrypt", source, encrypted, "-c"))
    assert (code, err, len(cmac)) == (0, "", 33)
    assert encrypted.read_bytes()[80:96].hex() + "\n" == cmac
    assert run(capsys, *pf("decrypt", encrypted, decrypted, "-c")) == (0, cmac, "")
    assert decrypted.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "train.enc", "train.txt"]


def test_decrypt_under_another_name_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, encrypted = tmp_path / "a.txt", tmp_path / "a.enc"
    source.write_bytes(b"hello")
    run(capsys, *pf("encrypt", source, encrypted))
    renamed = encrypted.rename(tmp_path / "b.enc")
    code, out, err = run(capsys, *pf("decrypt", renamed, tmp_path / "out"))
    assert (code, out) == (1, "")
    assert err == (
        f"teaclave: error: {renamed}: teaclave-file-128 name mismatch: "
        "encrypted as 'a.enc', opened as 'b.enc'\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:], "integrity check failed"),
        (lambda data: data[:-1], "is not a positive multiple of 4096"),
        (lambda data: data[:-4096], "is truncated (8 of 9 nodes)"),
    ],
)
def test_tampered_file_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[bytes], bytes],
    message: str,
) -> None:
    fixture, _, _ = next(f for f in PROTECTED_FILES if f[0].stat().st_size > 4096)
    encrypted = tmp_path / fixture.name
    encrypted.write_bytes(change(fixture.read_bytes()))
    code, out, err = run(capsys, *pf("decrypt", encrypted, tmp_path / "out"))
    assert (code, out) == (1, "")
    assert err.startswith(f"teaclave: error: {encrypted}: teaclave-file-128 ")
    assert message in err
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == [encrypted]


def test_wrong_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    encrypted = Path(shutil.copy(PROTECTED_FILES[0][0], tmp_path))
    argv = pf("decrypt", encrypted, tmp_path / "out")
    argv[argv.index(ZERO_KEY)] = "01" * 16
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert "integrity check failed (node 0: wrong key or corrupted file)" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--iv", "00" * 12], "teaclave-file-128 takes no iv"),
        (["-k", "00" * 32], "teaclave-file-128 key must be 16 bytes, got 32"),
    ],
)
def test_argument_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, _, err = run(capsys, *pf("encrypt", PROTECTED_FILES[0][1], tmp_path / "x", *extra))
    assert code == 2
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_aes_gcm_reference_vector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = FIXTURES / "functions" / "gbdt_training"
    argv = ["decrypt", "-a", "aes-gcm-128", "-k", ZERO_KEY, "--iv", "01" * 12, "-c"]
    files = ["-i", str(directory / "train.aes_gcm_128"), "-o", str(tmp_path / "train.txt")]
    assert run(capsys, *argv, *files) == (0, "592f1e607649d89ff2aa8a2841a57cad\n", "")
    assert (tmp_path / "train.txt").read_bytes() == (directory / "train.txt").read_bytes()


class Terminal(io.StringIO):
    """A stderr that says it is a terminal (progress bars are drawn only there)."""

    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    small, large, encrypted = tmp_path / "small", tmp_path / "large", tmp_path / "large.enc"
    small.write_bytes(b"x")
    large.write_bytes(bytes(64 << 20))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert run(capsys, *pf("encrypt", small, tmp_path / "small.enc"))[0] == 0
    assert terminal.getvalue() == ""
    assert run(capsys, *pf("encrypt", large, encrypted))[0] == 0
    drawn = terminal.getvalue()
    assert drawn.startswith("\r[")
    assert drawn.endswith(f"\r[{'#' * 32}] 100% 64.0 MiB/64.0 MiB\n")
    terminal.truncate(0)
    code, out, _ = run(capsys, *pf("decrypt", encrypted, tmp_path / "out", "-c", "--json"))
    assert code == 0
    assert json.loads(out)["cmac"] == encrypted.read_bytes()[80:96].hex()
    assert terminal.getvalue() == ""
    assert (tmp_path / "out").stat().st_size == 64 << 20


def test_progress_line() -> None:
    out = io.StringIO()
    bar = Progress(io.BytesIO(bytes(3 << 20)), 3 << 30, out)
    bar.read(1 << 20)
    bar.read(1 << 20)
    bar.finish()
    assert out.getvalue() == f"\r[{'.' * 32}]   0% 0.0 GiB/3.0 GiB\n"
    out = io.StringIO()
    bar = Progress(io.BytesIO(bytes(3 << 20)), 3 << 20, out)
    bar.read(1 << 20)
    bar.finish()
    assert out.getvalue() == f"\r[{'#' * 10}{'.' * 22}]  33% 1.0 MiB/3.0 MiB\n"
