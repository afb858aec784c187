"""``teaclave encrypt`` / ``decrypt`` through the command's entry point."""

import subprocess
import sys
from pathlib import Path

import pytest
from teaclave_fixtures import FIXTURES

from teaclave.cli.main import main

INPUT1 = FIXTURES / "fusion" / "input1.txt"
KEY = "00000000000000000000000000000001"
IV = "123456781234567812345678"
CMAC = "e8afd048b339fc835733e16c761a301c"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def aes(command: str, source: Path, target: Path, key: str = KEY, *extra: str) -> list[str]:
    files = ["-i", str(source), "-o", str(target)]
    return [command, "-a", "aes-gcm-128", "-k", key, "--iv", IV, *files, *extra]


def test_reference_vector_and_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encrypted, decrypted = tmp_path / "input1.enc", tmp_path / "input1.txt"
    assert run(capsys, *aes("encrypt", INPUT1, encrypted, KEY, "-c")) == (0, CMAC + "\n", "")
    assert encrypted.read_bytes()[-16:].hex() == CMAC
    assert run(capsys, *aes("decrypt", encrypted, decrypted, KEY, "--print-cmac")) == (
        0,
        CMAC + "\n",
        "",
    )
    assert decrypted.read_bytes() == INPUT1.read_bytes()


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *aes("encrypt", INPUT1, tmp_path / "x", KEY, "-c", "--json"))
    assert code == 0
    assert '"cmac": "' + CMAC in out


def test_wrong_key_leaves_no_plaintext(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    encrypted, decrypted = tmp_path / "input1.enc", tmp_path / "out.txt"
    run(capsys, *aes("encrypt", INPUT1, encrypted))
    code, out, err = run(capsys, *aes("decrypt", encrypted, decrypted, "00" * 16))
    assert code == 1
    assert out == ""
    assert err.startswith("teaclave: error: ")
    assert "authentication failed" in err
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == [encrypted]


def test_missing_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *aes("encrypt", tmp_path / "nope", tmp_path / "x"))
    assert code == 1
    assert err == f"teaclave: error: {tmp_path / 'nope'}: No such file or directory\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-a", "aes-gcm-128", "-k", "zz", "--iv", IV], "argument -k/--key: not hex: 'zz'"),
        (["-a", "aes-gcm-512", "-k", KEY, "--iv", IV], "argument -a/--algorithm: invalid choice"),
        (["-a", "aes-gcm-128", "-k", KEY], "--iv is required for aes-gcm-128"),
        (["-a", "aes-gcm-256", "-k", KEY, "--iv", IV], "aes-gcm-256 key must be 32 bytes, got 16"),
    ],
)
def test_argument_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "encrypt", *argv, "-i", str(INPUT1), "-o", str(tmp_path / "x"))
    assert code == 2
    assert out == ""
    assert message in err
    assert not (tmp_path / "x").exists()


def test_console_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "teaclave.cli.main",
            *aes("encrypt", INPUT1, tmp_path / "x", KEY, "-c"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, CMAC + "\n", "")


def test_tampered_file_writes_nothing_even_through_a_planted_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encrypted, decrypted, victim = tmp_path / "in.enc", tmp_path / "out.txt", tmp_path / "victim"
    run(capsys, *aes("encrypt", INPUT1, encrypted))
    data = bytearray(encrypted.read_bytes())
    data[0] ^= 1
    encrypted.write_bytes(bytes(data))
    victim.write_bytes(b"untouched")
    (tmp_path / "out.txt.partial").symlink_to(victim)
    assert run(capsys, *aes("decrypt", encrypted, decrypted))[0] == 1
    assert victim.read_bytes() == b"untouched"
    assert not decrypted.exists()


def test_encrypt_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "data"
    target.write_bytes(INPUT1.read_bytes())
    assert run(capsys, *aes("encrypt", target, target, KEY, "-c"))[1] == CMAC + "\n"
    assert run(capsys, *aes("decrypt", target, target))[0] == 0
    assert target.read_bytes() == INPUT1.read_bytes()


def test_every_help_works(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["encrypt"], ["decrypt"], ["serve"], ["demo"], ["user", "login"], ["task", "get"]):
        assert run(capsys, *argv, "--help")[0] == 0
