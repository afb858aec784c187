"""``builtin_online_decrypt`` (reference §7.6): AES-GCM decryption of an argument.

``key``, ``nonce`` (its first 12 bytes are used) and ``encrypted_data``
(ciphertext ‖ 16-byte tag) are base64; the AAD is empty (unlike the file
formats). Returns the plaintext, which must be UTF-8. No files.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from teaclave.core.errors import invalid_argument
from teaclave.functions.builtin import Builtin
from teaclave.functions.runtime import Runtime

NONCE_SIZE = 12
KEY_SIZES = {"aes128gcm": 16, "aes256gcm": 32}


@dataclass(frozen=True)
class OnlineDecryptArguments:
    """Base64 ``key``, ``nonce`` and ``encrypted_data``; ``algorithm``: aes128gcm or aes256gcm."""

    key: str
    nonce: str
    encrypted_data: str
    algorithm: str


def _base64(name: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise invalid_argument(f"{name} is not valid base64") from None


def online_decrypt(arguments: OnlineDecryptArguments, runtime: Runtime) -> str:
    """The plaintext of ``encrypted_data``."""
    key_size = KEY_SIZES.get(arguments.algorithm)
    if key_size is None:
        raise invalid_argument("Invalid algorithm")
    key = _base64("key", arguments.key)
    nonce = _base64("nonce", arguments.nonce)
    data = _base64("encrypted_data", arguments.encrypted_data)
    if len(key) != key_size:
        raise invalid_argument(f"key must be {key_size} bytes for {arguments.algorithm}")
    if len(nonce) < NONCE_SIZE:
        raise invalid_argument(f"nonce must be at least {NONCE_SIZE} bytes")
    try:
        plaintext = AESGCM(key).decrypt(nonce[:NONCE_SIZE], data, None)
    except InvalidTag:
        raise invalid_argument("decryption failed: wrong key or nonce, or tampered data") from None
    try:
        return plaintext.decode()
    except UnicodeDecodeError:
        raise invalid_argument("the plaintext is not UTF-8 text") from None


BUILTIN = Builtin("builtin_online_decrypt", OnlineDecryptArguments, online_decrypt)
