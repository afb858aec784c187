"""aes-gcm files against the reference vectors (§5.1), tampering and the schema dispatch."""

import base64
import io

import pytest
from teaclave_fixtures import FIXTURES

from teaclave.core.errors import Status
from teaclave.crypto import aesgcm
from teaclave.crypto.aesgcm import DecryptionError

KEY0, IV0, IV1 = bytes(16), bytes(12), b"\x01" * 12
KEY1 = bytes.fromhex("00000000000000000000000000000001")
KEY2 = bytes.fromhex("00" * 31 + "02")


def encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    sink = io.BytesIO()
    tag = aesgcm.encrypt(key, iv, io.BytesIO(plaintext), sink)
    assert sink.getvalue()[-16:] == tag
    return sink.getvalue()


def decrypt(key: bytes, iv: bytes, data: bytes, cmac: bytes | None = None) -> bytes:
    sink = io.BytesIO()
    aesgcm.decrypt_to(key, iv, io.BytesIO(data), sink, role="input 'x'", cmac=cmac)
    return sink.getvalue()


def test_gbdt_fixture_decrypts_to_train_txt() -> None:
    data = (FIXTURES / "functions/gbdt_training/train.aes_gcm_128").read_bytes()
    tag = bytes.fromhex("592f1e607649d89ff2aa8a2841a57cad")
    plaintext = (FIXTURES / "functions/gbdt_training/train.txt").read_bytes()
    assert decrypt(KEY0, IV1, data, cmac=tag) == plaintext
    assert encrypt(KEY0, IV1, plaintext) == data


def test_password_data_url_vector() -> None:
    data = base64.b64decode("c+mpvRfZ0fboR0j3rTgOGDBiubSzlCt9")
    assert decrypt(KEY0, IV0, data) == b"password"
    assert data[-16:].hex() == "e84748f7ad380e183062b9b4b3942b7d"
    assert encrypt(KEY0, IV0, b"password") == data


@pytest.mark.parametrize(
    ("name", "key", "iv", "tag"),
    [
        ("input1.txt", KEY1, "123456781234567812345678", "e8afd048b339fc835733e16c761a301c"),
        ("input2.txt", KEY2, "012345670123456701234567", "75d7cf7a7843dee709e29ba0dcb865d2"),
    ],
)
def test_fusion_vectors(name: str, key: bytes, iv: str, tag: str) -> None:
    plaintext = (FIXTURES / "fusion" / name).read_bytes()
    data = encrypt(key, bytes.fromhex(iv), plaintext)
    assert data[-16:].hex() == tag
    assert decrypt(key, bytes.fromhex(iv), data, cmac=bytes.fromhex(tag)) == plaintext


def test_streams_large_files_in_chunks() -> None:
    plaintext = bytes(range(256)) * 1000  # several chunks, not a multiple of the chunk size
    data = encrypt(KEY2, IV1, plaintext)
    assert len(data) == len(plaintext) + 16
    assert decrypt(KEY2, IV1, data, cmac=data[-16:]) == plaintext


def test_empty_plaintext_round_trips() -> None:
    data = encrypt(KEY0, IV0, b"")
    assert len(data) == 16
    assert decrypt(KEY0, IV0, data) == b""


def _password_file() -> bytes:
    return base64.b64decode("c+mpvRfZ0fboR0j3rTgOGDBiubSzlCt9")


@pytest.mark.parametrize(
    ("key", "data", "message"),
    [
        (KEY1, _password_file(), "authentication failed"),
        (KEY0, b"\x00" + _password_file()[1:], "authentication failed"),
        (KEY0, _password_file()[:-17] + _password_file()[-16:], "authentication failed"),
        (KEY0, _password_file()[:15], "truncated"),
        (KEY0, b"", "truncated"),
    ],
    ids=["wrong-key", "tampered", "shortened", "truncated", "empty"],
)
def test_bad_files_are_one_error(key: bytes, data: bytes, message: str) -> None:
    with pytest.raises(DecryptionError) as info:
        decrypt(key, IV0, data)
    assert info.value.status is Status.FAILED_PRECONDITION
    assert info.value.message.startswith("input 'x': ")
    assert message in info.value.message
    assert "password" not in info.value.message


def test_registered_cmac_must_match_the_file_tag() -> None:
    with pytest.raises(DecryptionError, match="cmac mismatch"):
        decrypt(KEY0, IV0, _password_file(), cmac=bytes(16))
