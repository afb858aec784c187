"""FileRuntime: functions' files as staged teaclave-file-128 files on disk."""

import io
import secrets
from pathlib import Path

import pytest

from teaclave.core.errors import TeaclaveError
from teaclave.crypto.protected_file import KEY_SIZE, IntegrityError, encrypt_stream
from teaclave.executor.runtime import FileRuntime, StagedFile

CONTENT = b"".join(b"line %d\n" % i for i in range(2000))  # several nodes


def stage(path: Path, content: bytes) -> StagedFile:
    key = secrets.token_bytes(KEY_SIZE)
    with path.open("xb") as sink:
        cmac = encrypt_stream(key, path.name, io.BytesIO(content), sink)
    return StagedFile(path, key, cmac)


def runtime(tmp_path: Path, staged: StagedFile) -> FileRuntime:
    return FileRuntime({"in": staged}, {"out": tmp_path / "out"}, buffer_size=4096)


def test_inputs_are_read_line_by_line_and_by_offset(tmp_path: Path) -> None:
    with runtime(tmp_path, stage(tmp_path / "in", CONTENT)) as files:
        stream = files.open_input("in")
        assert list(stream) == CONTENT.splitlines(keepends=True)
        stream.seek(5000)
        assert stream.read(10) == CONTENT[5000:5010]
        assert files.open_input("in").read() == CONTENT  # an independent second reader
    assert stream.closed


def test_outputs_are_protected_files_under_fresh_keys(tmp_path: Path) -> None:
    with runtime(tmp_path, stage(tmp_path / "in", b"")) as files:
        files.create_output("out").write(b"discarded")
        files.create_output("out").write(CONTENT)  # creating again starts over
        (output,) = files.finish_outputs().values()
    assert output.path == tmp_path / "out"
    assert CONTENT not in output.path.read_bytes()
    with output.open("output", 4096) as stream:
        assert stream.read() == CONTENT
    assert FileRuntime({}, {"out": tmp_path / "x"}, buffer_size=1).finish_outputs() == {}


def test_outputs_closed_by_the_function_are_finished(tmp_path: Path) -> None:
    with runtime(tmp_path, stage(tmp_path / "in", b"")) as files:
        with files.create_output("out") as stream:
            stream.write(b"result")
        with files.finish_outputs()["out"].open("output", 16) as output:
            assert output.read() == b"result"


def test_unknown_identifiers(tmp_path: Path) -> None:
    with runtime(tmp_path, stage(tmp_path / "in", b"")) as files:
        with pytest.raises(TeaclaveError, match=r"^Invalid input file identifier\.$"):
            files.open_input("out")
        with pytest.raises(TeaclaveError, match=r"^Invalid output file identifier$"):
            files.create_output("in")


def test_cmac_is_checked_when_opened(tmp_path: Path) -> None:
    staged = stage(tmp_path / "in", CONTENT)
    other = StagedFile(staged.path, staged.key, bytes(16))
    with (
        runtime(tmp_path, other) as files,
        pytest.raises(IntegrityError, match=r"^input 'in': cmac mismatch$"),
    ):
        files.open_input("in")
    with pytest.raises(IntegrityError, match=r"^input: cmac mismatch$"):
        other.verify("input")


def test_tampering_is_found_while_reading_and_by_verify(tmp_path: Path) -> None:
    staged = stage(tmp_path / "in", CONTENT)
    data = bytearray(staged.path.read_bytes())
    data[-100] ^= 1
    staged.path.write_bytes(bytes(data))
    message = r"^input 'in': teaclave-file-128 integrity check failed \(node \d+\)$"
    with runtime(tmp_path, staged) as files:
        stream = files.open_input("in")
        with pytest.raises(IntegrityError, match=message):
            stream.read()
    with pytest.raises(IntegrityError, match=message):
        staged.verify("input 'in'")
