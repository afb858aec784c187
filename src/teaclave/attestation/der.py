"""A minimal DER walker: the elements directly inside a byte string.

Enough for the few structures the verifiers read themselves (the PCK
certificate's SGX extension, certificates `cryptography` refuses to load);
lengths are checked, nothing is trusted.
"""

from __future__ import annotations


class DerError(ValueError):
    """Bytes that are not a sequence of well-formed DER elements."""


def elements(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """``(tag, whole element, content)`` of each DER element in ``data``, in order."""
    out: list[tuple[int, bytes, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise DerError("truncated DER")
        tag, length, start = data[pos], data[pos + 1], pos + 2
        if length & 0x80:
            count = length & 0x7F
            if not 1 <= count <= 4 or start + count > len(data):
                raise DerError("bad DER length")
            length, start = int.from_bytes(data[start : start + count], "big"), start + count
        end = start + length
        if end > len(data):
            raise DerError("DER value overruns its container")
        out.append((tag, data[pos:end], data[start:end]))
        pos = end
    return out
