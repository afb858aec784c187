"""``aes-gcm-128`` / ``aes-gcm-256`` files (reference §5.1), processed in chunks.

A file is one AEAD message, ``ciphertext || tag(16)``, with the registered
12-byte iv as nonce and 8 zero bytes as associated data; its cmac is the tag.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.model import CMAC_SIZE
from teaclave.crypto.streams import Reader, Writer, chunks

AAD = bytes(8)
"""The associated data of every file (8 zero bytes, not empty)."""


class DecryptionError(TeaclaveError):
    """A file that is not what was registered: too short, tampered, wrong key or cmac."""

    def __init__(self, message: str) -> None:
        super().__init__(Status.FAILED_PRECONDITION, message)


def encrypt(key: bytes, iv: bytes, reader: Reader, writer: Writer) -> bytes:
    """Encrypt ``reader`` to ``writer`` as ``ciphertext || tag``; returns the tag (cmac)."""
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(AAD)
    for chunk in chunks(reader):
        writer.write(encryptor.update(chunk))
    writer.write(encryptor.finalize())
    writer.write(encryptor.tag)
    return encryptor.tag


def decrypt_to(
    key: bytes, iv: bytes, reader: Reader, writer: Writer, *, role: str, cmac: bytes | None = None
) -> bytes:
    """Decrypt ``reader`` (``ciphertext || tag``) into ``writer``; returns the tag.

    ``writer`` receives plaintext *before* the tag is verified: on
    :class:`DecryptionError` the caller must discard everything written to it.
    If ``cmac`` is given, the file's tag must equal it ("cmac mismatch").
    ``role`` names the file in error messages (no data is ever included).
    """
    decryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).decryptor()
    decryptor.authenticate_additional_data(AAD)
    # The last CMAC_SIZE bytes seen so far may be the tag: hold them back.
    pending = b""
    for chunk in chunks(reader):
        pending += chunk
        if len(pending) > CMAC_SIZE:
            writer.write(decryptor.update(pending[:-CMAC_SIZE]))
            pending = pending[-CMAC_SIZE:]
    if len(pending) < CMAC_SIZE:
        raise DecryptionError(f"{role}: aes-gcm file is truncated (shorter than its tag)")
    if cmac is not None and pending != cmac:
        raise DecryptionError(f"{role}: cmac mismatch")
    try:
        writer.write(decryptor.finalize_with_tag(pending))
    except InvalidTag:
        raise DecryptionError(
            f"{role}: aes-gcm authentication failed (wrong key or corrupted file)"
        ) from None
    return pending
