"""Sealing of records at rest with the platform sealing key.

Without TEE hardware the sealing key is simulated: 32 random bytes kept in
``<data_dir>/simulation/sealing.key`` (mode 0600). Each record is sealed with
AES-256-GCM under a fresh 12-byte nonce and bound to its name (the storage
key) as associated data, so a sealed value cannot be moved to another key.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from teaclave.core.errors import Status, TeaclaveError

KEY_SIZE = 32
NONCE_SIZE = 12
_TAG_SIZE = 16


def load_or_create_sealing_key(data_dir: Path) -> bytes:
    """The sealing key of ``data_dir``, created (atomically, once) on first use."""
    sim = data_dir / "simulation"
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # its owner's only, if new
    sim.mkdir(exist_ok=True, mode=0o700)
    path = sim / "sealing.key"
    if not path.exists():
        tmp = sim / f".sealing.key.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(KEY_SIZE))
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) != KEY_SIZE:
        raise TeaclaveError(Status.INTERNAL, f"sealing key {path} is not {KEY_SIZE} bytes")
    return key


class Sealer:
    """AES-256-GCM sealing of named records."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"sealing key must be {KEY_SIZE} bytes")
        self._aead = AESGCM(key)

    def seal(self, name: str, plaintext: bytes) -> bytes:
        """``nonce || ciphertext || tag``, with ``name`` as associated data."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, name.encode())

    def unseal(self, name: str, blob: bytes) -> bytes:
        """The plaintext sealed under ``name``; INTERNAL if the blob was tampered with."""
        if len(blob) < NONCE_SIZE + _TAG_SIZE:
            raise TeaclaveError(Status.INTERNAL, "sealed record is corrupt")
        try:
            return self._aead.decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], name.encode())
        except InvalidTag:
            raise TeaclaveError(Status.INTERNAL, "sealed record is corrupt") from None
