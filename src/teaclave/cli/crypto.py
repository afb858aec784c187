"""``teaclave encrypt`` / ``teaclave decrypt``: file formats of reference §5 (§11.3 flags)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from pathlib import Path

from teaclave.cli.context import Context, Subcommands, UsageError, add_command, hex_bytes
from teaclave.core.errors import TeaclaveError
from teaclave.core.model import CryptoSchema, FileCrypto
from teaclave.crypto import aesgcm

ALGORITHMS = (
    CryptoSchema.AES_GCM_128.value,
    CryptoSchema.AES_GCM_256.value,
    CryptoSchema.TEACLAVE_FILE_128.value,
)


def _aes_crypto(algorithm: str, key: bytes, iv: bytes) -> FileCrypto:
    schema = CryptoSchema(algorithm)
    if schema is CryptoSchema.TEACLAVE_FILE_128:
        raise UsageError("teaclave-file-128 is not supported yet; use aes-gcm-128 or aes-gcm-256")
    if not iv:
        raise UsageError(f"--iv is required for {schema.value}")
    try:
        return FileCrypto.parse(schema.value, key, iv)
    except TeaclaveError as exc:
        raise UsageError(exc.message) from None


def _write_new(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` atomically, through a fresh private temporary file."""
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as writer:
            writer.write(data)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def encrypt_file(crypto: FileCrypto, source: Path, target: Path) -> bytes:
    """Encrypt ``source`` into ``target`` (which may be ``source``); returns the cmac."""
    sink = io.BytesIO()
    cmac = aesgcm.encrypt(crypto.key, crypto.iv, io.BytesIO(source.read_bytes()), sink)
    _write_new(target, sink.getvalue())
    return cmac


def decrypt_file(
    crypto: FileCrypto, source: Path, target: Path, cmac: bytes | None = None
) -> bytes:
    """Decrypt ``source`` into ``target``; returns the cmac.

    The plaintext stays in memory until the tag verifies: nothing is written
    for a tampered or truncated file.
    """
    sink = io.BytesIO()
    tag = aesgcm.decrypt_to(
        crypto.key, crypto.iv, io.BytesIO(source.read_bytes()), sink, role=str(source), cmac=cmac
    )
    _write_new(target, sink.getvalue())
    return tag


def _run(args: argparse.Namespace, ctx: Context) -> None:
    crypto = _aes_crypto(args.algorithm, args.key, args.iv)
    convert = encrypt_file if args.command == "encrypt" else decrypt_file
    cmac = convert(crypto, args.input_file, args.output_file)
    if args.print_cmac:
        ctx.emit({"cmac": cmac}, cmac.hex())


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``encrypt`` and ``decrypt``."""
    for name, verb in (("encrypt", "Encrypt"), ("decrypt", "Decrypt and authenticate")):
        parser = add_command(sub, parent, name, _run, f"{verb} a file (aes-gcm: ciphertext||tag)")
        parser.add_argument("-a", "--algorithm", required=True, choices=ALGORITHMS)
        parser.add_argument("-k", "--key", required=True, type=hex_bytes, help="key in hex")
        parser.add_argument("--iv", type=hex_bytes, default=b"", help="12-byte iv in hex")
        parser.add_argument("-i", "--input-file", required=True, type=Path)
        parser.add_argument("-o", "--output-file", required=True, type=Path)
        parser.add_argument(
            "-c", "--print-cmac", action="store_true", help="print the 16-byte cmac in hex"
        )
