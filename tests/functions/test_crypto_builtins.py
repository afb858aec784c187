"""builtin_online_decrypt (reference §7.6) and builtin-rsa-sign (§7.9)."""

import base64

import pytest
from builtin_helpers import call
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from teaclave_fixtures import FIXTURES

from teaclave.core.errors import TeaclaveError

RSA = FIXTURES / "functions" / "rsa_sign"
NONCE = "AAECAwQFBgcICQoL"
VECTORS = [
    (
        "aqUdgZ0lJnuz9yiPkoDxM6ZcTcVVpd4KKLqzbHD88Lg=",
        "CaZd8qSMMlBp8SjSXj2I4dQIuC9KkZ5DI/ATo1sWJw==",
        "aes256gcm",
    ),
    ("aqUdgZ0lJnuz9yiPkoDxMw==", "OqMscYqxk1CshHQZulTrrDlJjS/v6BE/clWJyTerUw==", "aes128gcm"),
]


def decrypt(key: str, data: str, algorithm: str, nonce: str = NONCE) -> str:
    arguments = {"key": key, "nonce": nonce, "encrypted_data": data, "algorithm": algorithm}
    return call("builtin_online_decrypt", arguments, {})[0]


@pytest.mark.parametrize(("key", "data", "algorithm"), VECTORS)
def test_online_decrypt_vectors(key: str, data: str, algorithm: str) -> None:
    assert decrypt(key, data, algorithm) == "Hello Teaclave!"


def test_online_decrypt_uses_the_first_12_nonce_bytes() -> None:
    longer = base64.b64encode(base64.b64decode(NONCE) + b"ignored").decode()
    assert decrypt(*VECTORS[1], nonce=longer) == "Hello Teaclave!"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algorithm": "aes192gcm"}, "^Invalid algorithm$"),
        ({"key": "not base64!"}, "^key is not valid base64$"),
        ({"nonce": "AAE"}, "^nonce is not valid base64$"),
        ({"encrypted_data": "%%"}, "^encrypted_data is not valid base64$"),
        ({"algorithm": "aes256gcm"}, "^key must be 32 bytes for aes256gcm$"),
        ({"nonce": "AAECAw=="}, "^nonce must be at least 12 bytes$"),
        ({"encrypted_data": VECTORS[0][1]}, "^decryption failed"),
    ],
)
def test_online_decrypt_errors(change: dict[str, str], message: str) -> None:
    key, data, algorithm = VECTORS[1]
    arguments = {"key": key, "encrypted_data": data, "algorithm": algorithm, "nonce": NONCE}
    arguments.update(change)
    with pytest.raises(TeaclaveError, match=message):
        decrypt(
            arguments["key"],
            arguments["encrypted_data"],
            arguments["algorithm"],
            arguments["nonce"],
        )


def test_online_decrypt_refuses_non_utf8_plaintext() -> None:
    key, nonce = bytes(16), bytes(12)
    data = AESGCM(key).encrypt(nonce, b"\xff\xfe", None)
    with pytest.raises(TeaclaveError, match=r"^the plaintext is not UTF-8 text$"):
        decrypt(
            *(base64.b64encode(v).decode() for v in (key, data)),
            "aes128gcm",
            nonce=base64.b64encode(nonce).decode(),
        )


def test_rsa_sign_fixture() -> None:
    key = (RSA / "key.der").read_bytes()
    summary, _ = call("builtin-rsa-sign", {"data": "test data"}, {"rsa_key": key})
    expected = (RSA / "expected_rsasign.txt").read_text().replace("\n", "")
    assert summary == expected
    public = serialization.load_der_private_key(key, None).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(base64.b64decode(summary), b"test data", padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (b"", "^rsa_key is not a DER RSA private key$"),
        (b"\x30\x03garbage", "^rsa_key is not a DER RSA private key$"),
        (bytes(70000), "^rsa_key is larger than 65536 bytes$"),
    ],
)
def test_rsa_sign_bad_keys(key: bytes, message: str) -> None:
    with pytest.raises(TeaclaveError, match=message):
        call("builtin-rsa-sign", {"data": "x"}, {"rsa_key": key})


def test_rsa_sign_refuses_other_key_types() -> None:
    der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(TeaclaveError, match=r"^rsa_key is not an RSA key$"):
        call("builtin-rsa-sign", {"data": "x"}, {"rsa_key": der})


def test_rsa_sign_needs_its_argument() -> None:
    with pytest.raises(TeaclaveError, match="missing key 'data'"):
        call("builtin-rsa-sign", {}, {"rsa_key": (RSA / "key.der").read_bytes()})
