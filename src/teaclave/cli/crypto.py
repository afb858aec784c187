"""``teaclave encrypt`` / ``teaclave decrypt``: file formats of reference §5 (§11.3 flags).

Files are processed in chunks. The output goes to a private temporary file
beside the target, which replaces the target only once everything is written
and verified.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO, TypeVar

from teaclave.cli.context import Context, Subcommands, UsageError, add_command, hex_bytes
from teaclave.core.errors import TeaclaveError
from teaclave.core.model import CryptoSchema, FileCrypto
from teaclave.crypto import aesgcm, protected_file

ALGORITHMS = (
    CryptoSchema.AES_GCM_128.value,
    CryptoSchema.AES_GCM_256.value,
    CryptoSchema.TEACLAVE_FILE_128.value,
)
PROGRESS_MIN_BYTES = 64 << 20
"""Files at least this large show a progress bar (on a terminal)."""

_T = TypeVar("_T")


def _crypto(algorithm: str, key: bytes, iv: bytes) -> FileCrypto:
    schema = CryptoSchema(algorithm)
    if schema is not CryptoSchema.TEACLAVE_FILE_128 and not iv:
        raise UsageError(f"--iv is required for {schema.value}")
    try:
        return FileCrypto.parse(schema.value, key, iv)
    except TeaclaveError as exc:
        raise UsageError(exc.message) from None


class Progress:
    """Counts the bytes read from ``source`` and draws ``[####....] 42% 1.2 GiB/2.9 GiB``."""

    WIDTH = 32

    def __init__(self, source: BinaryIO, total: int, out: TextIO) -> None:
        self._source = source
        self._total = max(total, 1)
        self._unit, self._scale = ("GiB", 1 << 30) if total >= 1 << 30 else ("MiB", 1 << 20)
        self._out = out
        self._done = 0
        self._shown = -1

    def read(self, size: int = -1, /) -> bytes:
        """Read from the source, and redraw when the percentage changes."""
        data = self._source.read(size)
        self._done += len(data)
        percent = min(100, self._done * 100 // self._total)
        if percent != self._shown:
            self._shown = percent
            bar = "#" * (percent * self.WIDTH // 100)
            done, total = min(self._done, self._total) / self._scale, self._total / self._scale
            self._out.write(
                f"\r[{bar:.<{self.WIDTH}}] {percent:3d}% "
                f"{done:.1f} {self._unit}/{total:.1f} {self._unit}"
            )
            self._out.flush()
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        """Seek the source."""
        return self._source.seek(offset, whence)

    def finish(self) -> None:
        """End the bar's line (if it was drawn)."""
        if self._shown >= 0:
            self._out.write("\n")
            self._out.flush()


@contextlib.contextmanager
def _reading(source: Path, progress: bool) -> Iterator[BinaryIO | Progress]:
    """``source`` opened for reading, with a progress bar on stderr if ``progress``."""
    with source.open("rb") as reader:
        size = os.fstat(reader.fileno()).st_size
        if not progress or size < PROGRESS_MIN_BYTES:
            yield reader
            return
        bar = Progress(reader, size, sys.stderr)
        try:
            yield bar
        finally:
            bar.finish()


def _write_new(target: Path, produce: Callable[[BinaryIO], _T]) -> _T:
    """Replace ``target`` with what ``produce`` writes, through a fresh private temporary file.

    If ``produce`` fails, the temporary file is removed and ``target`` is untouched.
    """
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w+b") as writer:
            result = produce(writer)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return result


def encrypt_file(
    crypto: FileCrypto, source: Path, target: Path, *, progress: bool = False
) -> bytes:
    """Encrypt ``source`` into ``target`` (which may be ``source``); returns the cmac.

    A teaclave-file-128 file is bound to the name of ``target``.
    """
    with _reading(source, progress) as reader:
        if crypto.schema is CryptoSchema.TEACLAVE_FILE_128:
            return _write_new(
                target,
                lambda sink: protected_file.encrypt_stream(crypto.key, target.name, reader, sink),
            )
        return _write_new(target, lambda sink: aesgcm.encrypt(crypto.key, crypto.iv, reader, sink))


def decrypt_file(
    crypto: FileCrypto,
    source: Path,
    target: Path,
    cmac: bytes | None = None,
    *,
    progress: bool = False,
) -> bytes:
    """Decrypt ``source`` into ``target``; returns the cmac.

    The plaintext goes to a private temporary file that replaces ``target``
    only once the whole file is verified: nothing is written for a tampered
    or truncated file. A teaclave-file-128 file must be named as when it was
    encrypted.
    """
    role = str(source)
    with _reading(source, progress) as reader:
        if crypto.schema is CryptoSchema.TEACLAVE_FILE_128:
            return _write_new(
                target,
                lambda sink: protected_file.decrypt_stream(
                    reader, crypto.key, source.name, sink, role=role, cmac=cmac
                ),
            )
        return _write_new(
            target,
            lambda sink: aesgcm.decrypt_to(
                crypto.key, crypto.iv, reader, sink, role=role, cmac=cmac
            ),
        )


def _run(args: argparse.Namespace, ctx: Context) -> None:
    crypto = _crypto(args.algorithm, args.key, args.iv)
    convert = encrypt_file if args.command == "encrypt" else decrypt_file
    progress = not ctx.json and sys.stderr.isatty()
    cmac = convert(crypto, args.input_file, args.output_file, progress=progress)
    if args.print_cmac:
        ctx.emit({"cmac": cmac}, cmac.hex())


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``encrypt`` and ``decrypt``."""
    for name, verb in (("encrypt", "Encrypt"), ("decrypt", "Decrypt and authenticate")):
        parser = add_command(
            sub,
            parent,
            name,
            _run,
            f"{verb} a file (aes-gcm: ciphertext||tag; teaclave-file-128: an SGX protected "
            "file bound to its file name)",
        )
        parser.add_argument("-a", "--algorithm", required=True, choices=ALGORITHMS)
        parser.add_argument("-k", "--key", required=True, type=hex_bytes, help="key in hex")
        parser.add_argument(
            "--iv", type=hex_bytes, default=b"", help="12-byte iv in hex (aes-gcm only)"
        )
        parser.add_argument("-i", "--input-file", required=True, type=Path)
        parser.add_argument("-o", "--output-file", required=True, type=Path)
        parser.add_argument(
            "-c", "--print-cmac", action="store_true", help="print the 16-byte cmac in hex"
        )
