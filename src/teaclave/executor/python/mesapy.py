"""The MesaPy profile: what tasks of executor ``mesapy`` get beyond Python 3.

Teaclave's MesaPy ran Python 2.7, where a file's contents are byte strings that
string methods work on (``line.strip().split(',')``). Here a file opened by
``teaclave_open`` reads ``str``: its bytes decoded as UTF-8, any other byte kept as
a lone surrogate (``surrogateescape``), so writing what was read, returning it as
the summary or handing it to ``marshal.loads`` gives back the same bytes. Writes
take ``bytes`` or such ``str``. ``_numpypy`` and a ``marshal`` that writes numpy
arrays as their raw buffers come from :mod:`.numpypy` (only if numpy is allowed).
Python 2 syntax stays unsupported (:func:`teaclave.executor.python.payload.check`).
"""

from __future__ import annotations

import io
import types
from collections.abc import Collection
from typing import BinaryIO

PROFILE = "mesapy"
"""The executor name of tasks that get the profile."""


def preload(allowed: Collection[str]) -> None:
    """Import :mod:`.numpypy` now if numpy is allowed: the sandbox cannot read platform code."""
    if "numpy" in allowed:
        from teaclave.executor.python import numpypy  # noqa: F401 (imported for the sandbox)


def modules(allowed: Collection[str]) -> dict[str, types.ModuleType]:
    """The profile's modules by import name (``_numpypy``, ``marshal``); none without numpy.

    Call it in the sandbox only after :func:`preload` ran before the fork.
    """
    if "numpy" not in allowed:
        return {}
    from teaclave.executor.python import numpypy

    return numpypy.modules()


def text(data: bytes) -> str:
    """Bytes as a MesaPy byte string: UTF-8, other bytes as lone surrogates."""
    return data.decode("utf-8", "surrogateescape")


def raw(value: str | bytes) -> bytes:
    """The bytes of a MesaPy byte string (or of bytes)."""
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


class ByteStringFile(io.TextIOBase):
    """A file as MesaPy payloads use it: reads give :func:`text`, writes take either kind."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return self._stream.readable()

    def writable(self) -> bool:
        return self._stream.writable()

    def read(self, size: int | None = -1) -> str:
        """At most ``size`` bytes (all if negative or None)."""
        return text(self._stream.read(-1 if size is None else size))

    def readline(self, size: int = -1, /) -> str:  # type: ignore[override]  # as TextIOBase
        """The next line, with its newline (iteration and ``readlines`` use it)."""
        return text(self._stream.readline(size))

    def write(self, data: str | bytes, /) -> int:
        """Write ``data`` (a str as its bytes, see :func:`raw`)."""
        return self._stream.write(raw(data))

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        """Close the file (an output is then complete)."""
        if not self.closed:
            super().close()  # flushes first
            self._stream.close()
