"""What a shared object asks of the dynamic linker: DT_NEEDED, DT_RPATH and DT_RUNPATH.

Only 64-bit little-endian ELF (the sandbox's architectures); anything else, or a
malformed file, names no dependency. Reads only the headers, the dynamic section and
its string table, through the ``read(offset, size)`` handed in.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

Read = Callable[[int, int], bytes]
"""``read(offset, size)``: up to ``size`` bytes of the file from ``offset``."""

_IDENT = b"\x7fELF\x02\x01"  # magic, ELFCLASS64, ELFDATA2LSB
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 10, 15, 29
_HEADER = struct.Struct("<16xHHIQQQIHHHHHH")
_PROGRAM = struct.Struct("<IIQQQQQQ")  # type, flags, offset, vaddr, paddr, filesz, memsz, align
_DYNAMIC = struct.Struct("<qQ")
_MAX_TABLE = 1 << 20
"""Larger program headers, dynamic sections or string tables are taken as malformed."""


@dataclass(frozen=True)
class Dynamic:
    """The dynamic section's library requests (empty for a file that is not one)."""

    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()


def _exactly(read: Read, offset: int, size: int) -> bytes:
    if size > _MAX_TABLE:
        raise ValueError("table too large")
    data = read(offset, size)
    if len(data) != size:
        raise ValueError("truncated")
    return data


def _file_offset(loads: list[tuple[int, ...]], address: int) -> int:
    """The file offset of virtual ``address``, through the PT_LOAD segments."""
    for _, _, offset, vaddr, _, filesz, _, _ in loads:
        if vaddr <= address < vaddr + filesz:
            return address - vaddr + offset
    raise ValueError("address outside every loaded segment")


def _entries(read: Read) -> tuple[list[tuple[int, int]], list[tuple[int, ...]]]:
    """The dynamic section's (tag, value) pairs and the PT_LOAD segments."""
    header = _exactly(read, 0, _HEADER.size)
    if not header.startswith(_IDENT):
        return [], []
    fields = _HEADER.unpack(header)
    phoff, phentsize, phnum = fields[4], fields[8], fields[9]
    if phentsize < _PROGRAM.size:
        raise ValueError("program header too small")
    table = _exactly(read, phoff, phentsize * phnum)
    segments = [_PROGRAM.unpack_from(table, i * phentsize) for i in range(phnum)]
    dynamic = next((s for s in segments if s[0] == _PT_DYNAMIC), None)
    if dynamic is None:
        return [], []
    section = _exactly(read, dynamic[2], dynamic[5] - dynamic[5] % _DYNAMIC.size)
    entries = []
    for tag, value in _DYNAMIC.iter_unpack(section):
        if tag == _DT_NULL:
            break
        entries.append((tag, value))
    return entries, [s for s in segments if s[0] == _PT_LOAD]


def parse(read: Read) -> Dynamic:
    """The dynamic section of the ELF file behind ``read``."""
    try:
        entries, loads = _entries(read)
        values = dict(entries)
        if _DT_STRTAB not in values:
            return Dynamic()
        strings = _exactly(read, _file_offset(loads, values[_DT_STRTAB]), values.get(_DT_STRSZ, 0))

        def texts(wanted: int) -> list[str]:
            found = []
            for tag, offset in entries:
                end = strings.find(b"\0", offset)
                if tag == wanted:
                    if end < 0:
                        raise ValueError("string outside the table")
                    found.append(strings[offset:end].decode("utf-8", "surrogateescape"))
            return found

        def search_path(wanted: int) -> tuple[str, ...]:
            return tuple(p for text in texts(wanted) for p in text.split(":") if p)

        return Dynamic(tuple(texts(_DT_NEEDED)), search_path(_DT_RPATH), search_path(_DT_RUNPATH))
    except (struct.error, ValueError):
        return Dynamic()
