"""Reading an input a block of whole lines at a time, as bytes or as UTF-8 text."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

from teaclave.core.errors import invalid_argument

BLOCK_BYTES = 1 << 18


def line_blocks(stream: BinaryIO) -> Iterator[bytes]:
    """Blocks of whole lines of ``stream``, about :data:`BLOCK_BYTES` each."""
    pending: list[bytes] = []
    while chunk := stream.read(BLOCK_BYTES):
        cut = chunk.rfind(b"\n") + 1
        if not cut:
            pending.append(chunk)
            continue
        pending.append(chunk[:cut])
        yield b"".join(pending)
        pending = [chunk[cut:]] if cut < len(chunk) else []
    if pending:
        yield b"".join(pending)


def decoded_blocks(stream: BinaryIO, name: str) -> Iterator[str]:
    """The blocks of :func:`line_blocks` decoded as UTF-8 (input ``name`` in errors)."""
    for block in line_blocks(stream):
        try:
            yield block.decode()
        except UnicodeDecodeError:
            raise invalid_argument(f"{name} is not UTF-8 text") from None


def text_lines(texts: Iterator[str]) -> Iterator[str]:
    """The lines of ``texts``, line ends kept (\\n, \\r\\n or \\r, as ``newline=""`` reads them)."""
    for text in texts:
        yield from io.StringIO(text, newline="")
