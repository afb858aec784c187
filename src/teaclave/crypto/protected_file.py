"""``teaclave-file-128``: SGX protected files (teaclave-sgx-sdk v2 layout, reference §5.3).

A file is a sequence of 4096-byte nodes. Node 0 holds the metadata and the
first 3072 bytes of content; the rest of the content is in data nodes, which
hang under Merkle-hash-tree (MHT) nodes. Every node is AES-128-GCM encrypted
under its own key, and its key and tag are stored in its parent (the root MHT's
in the metadata), so every node read is verified. The file's cmac is the GCM
tag of the metadata, whose key is derived from the user key.
"""

from __future__ import annotations

import io
import secrets
import struct
from collections import OrderedDict
from collections.abc import Iterable
from types import TracebackType
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC

from teaclave.core.errors import invalid_argument
from teaclave.crypto.aesgcm import DecryptionError
from teaclave.crypto.streams import Reader, Writer

KEY_SIZE = 16
NODE_SIZE = 4096

_TAG_SIZE = 16
_NONCE = bytes(12)
_SLOT = KEY_SIZE + _TAG_SIZE  # a child's {key, gmac} in its parent
_DATA_SLOTS = 96  # data nodes under one MHT node; its 32 child-MHT slots follow
_MHT_SLOTS = 32
_GROUP = _DATA_SLOTS + 1  # an MHT node and its data nodes are this many consecutive nodes
_HEAD = 3072  # content bytes kept in the metadata node
_MAX_NAME = 259  # bytes, NUL-terminated in a 260-byte field

# Metadata node: plaintext header, then the encrypted part, then zero padding.
_MAGIC = struct.pack("<QBBBBHH", 0x5347585F46494C45, 1, 0, 1, 0, 0, 0)
"""file_id "ELIF_XGS", version 1.0, user key, update_flag 0, key_policy 0, isv_svn 0."""
_KEY_ID = slice(16, 48)
_ZERO_FIELDS = slice(48, 80)  # cpu_svn, attribute_mask
_GMAC = slice(80, 96)
_PART_HEADER = struct.Struct(f"<{_MAX_NAME + 1}sQ{KEY_SIZE}s{_TAG_SIZE}s")  # then _HEAD bytes
_PART = slice(96, 96 + _PART_HEADER.size + _HEAD)
_PADDING = NODE_SIZE - _PART.stop

_KDF_INPUT = struct.Struct("<I64sIQ32sII")
_METADATA_LABEL = b"SGX-PROTECTED-FS-METADATA-KEY"

_MHT_CACHE = 64
_DATA_CACHE = 4


class IntegrityError(DecryptionError):
    """A protected file that fails verification: wrong key, tampered, truncated or misnamed."""


class Source(Protocol):
    """A readable, seekable byte stream."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes."""
        ...

    def seek(self, offset: int, whence: int = 0, /) -> int:
        """Move to ``offset``; the new position."""
        ...


class Sink(Protocol):
    """A writable, seekable byte stream."""

    def write(self, data: bytes | memoryview, /) -> object:
        """Write all of ``data``."""
        ...

    def seek(self, offset: int, whence: int = 0, /) -> int:
        """Move to ``offset``; the new position."""
        ...


def _check_key(key: bytes) -> bytes:
    if len(key) != KEY_SIZE:
        raise invalid_argument(f"teaclave-file-128 key must be {KEY_SIZE} bytes, got {len(key)}")
    return key


def _metadata_key(key: bytes, key_id: bytes) -> bytes:
    cmac = CMAC(algorithms.AES(key))
    cmac.update(_KDF_INPUT.pack(1, _METADATA_LABEL, 0, 0, key_id, 8 * KEY_SIZE, 0))
    return cmac.finalize()


def _data_node(d: int) -> int:
    """The physical node number of data node ``d``."""
    return d + 2 + d // _DATA_SLOTS


def _mht_node(m: int) -> int:
    """The physical node number of MHT node ``m``."""
    return 1 + m * _GROUP


def _child_slot(m: int) -> tuple[int, int]:
    """MHT node ``m`` ≥ 1: its parent MHT node and the slot there holding its key and gmac."""
    parent, index = divmod(m - 1, _MHT_SLOTS)
    return parent, _DATA_SLOTS + index


def _data_nodes(size: int) -> int:
    """How many data nodes hold ``size`` bytes of content."""
    return max(0, -(-(size - _HEAD) // NODE_SIZE))


def _node_count(size: int) -> int:
    """How many nodes a file with ``size`` bytes of content has."""
    count = _data_nodes(size)
    return _data_node(count - 1) + 1 if count else 1


def _seal(
    plaintexts: Iterable[bytes | bytearray | memoryview], table: bytearray, slot: int
) -> list[memoryview]:
    """Encrypt nodes under fresh keys; each {key, gmac} goes to ``table`` from ``slot`` on."""
    nodes = list(plaintexts)
    keys = secrets.token_bytes(KEY_SIZE * len(nodes))
    sealed = []
    for i, plaintext in enumerate(nodes):
        key = keys[i * KEY_SIZE : (i + 1) * KEY_SIZE]
        node = AESGCM(key).encrypt(_NONCE, plaintext, None)
        start = (slot + i) * _SLOT
        table[start : start + _SLOT] = key + node[NODE_SIZE:]
        sealed.append(memoryview(node)[:NODE_SIZE])
    return sealed


class ProtectedFileWriter:
    """Writes a protected file named ``name`` (bound into it) to ``sink``, from offset 0.

    Whole data nodes are encrypted and written as they arrive (at most one
    partial node of plaintext is held); the MHT nodes' slot tables (4096 bytes
    per 96 data nodes) are kept until :meth:`close`. Every file gets fresh
    random node keys and key_id.
    """

    def __init__(self, key: bytes, name: str, sink: Sink) -> None:
        encoded = name.encode()
        if not encoded or len(encoded) > _MAX_NAME or b"\0" in encoded:
            raise invalid_argument(
                f"teaclave-file-128 name must be 1 to {_MAX_NAME} bytes without NUL: {name!r}"
            )
        self._key = _check_key(key)
        self._name = encoded
        self._sink = sink
        self._position = -1  # the sink's position, as far as known
        self._size = 0
        self._head = bytearray(_HEAD)
        self._pending = bytearray()  # content of the data node being filled
        self._nodes = 0  # data nodes written
        self._mhts: list[bytearray] = []  # plaintext slot tables
        self._cmac: bytes | None = None

    def __enter__(self) -> ProtectedFileWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; returns its length."""
        if self._cmac is not None:
            raise ValueError("write to a closed ProtectedFileWriter")
        view = memoryview(data).cast("B")
        head = min(len(view), _HEAD - self._size) if self._size < _HEAD else 0
        self._head[self._size : self._size + head] = view[:head]
        rest = view[head:]
        if self._pending:
            fill = NODE_SIZE - len(self._pending)
            self._pending += rest[:fill]
            rest = rest[fill:]
            if len(self._pending) == NODE_SIZE:
                self._put(memoryview(self._pending))
                self._pending = bytearray()
        whole = len(rest) - len(rest) % NODE_SIZE
        self._put(rest[:whole])
        self._pending += rest[whole:]
        self._size += len(view)
        return len(view)

    def close(self) -> bytes:
        """Finish the file (MHT nodes, then metadata); returns its cmac. Idempotent."""
        if self._cmac is not None:
            return self._cmac
        if self._pending:
            self._pending += bytes(NODE_SIZE - len(self._pending))
            self._put(memoryview(self._pending))
            self._pending = bytearray()
        root = bytearray(_SLOT)
        for m in reversed(range(len(self._mhts))):
            if m:
                parent, slot = _child_slot(m)
                table = self._mhts[parent]
            else:
                table, slot = root, 0
            self._write(_mht_node(m), _seal([self._mhts[m]], table, slot))
        self._mhts = []
        key_id = secrets.token_bytes(32)
        part = _PART_HEADER.pack(self._name, self._size, root[:KEY_SIZE], root[KEY_SIZE:])
        sealed = AESGCM(_metadata_key(self._key, key_id)).encrypt(_NONCE, part + self._head, None)
        gmac = sealed[-_TAG_SIZE:]
        header = _MAGIC + key_id + bytes(_ZERO_FIELDS.stop - _ZERO_FIELDS.start) + gmac
        self._sink.seek(0)
        self._sink.write(header + sealed[:-_TAG_SIZE] + bytes(_PADDING))
        if self._nodes:
            self._sink.seek(_data_node(self._nodes - 1) * NODE_SIZE + NODE_SIZE)
        self._cmac = gmac
        return gmac

    def _put(self, content: memoryview) -> None:
        """Encrypt and write whole data nodes, recording them in their MHT nodes."""
        start = 0
        while start < len(content):  # one run per MHT node
            index = self._nodes % _DATA_SLOTS
            if not index:
                self._mhts.append(bytearray(NODE_SIZE))
            end = min(len(content), start + (_DATA_SLOTS - index) * NODE_SIZE)
            nodes = (content[i : i + NODE_SIZE] for i in range(start, end, NODE_SIZE))
            self._write(_data_node(self._nodes), _seal(nodes, self._mhts[-1], index))
            self._nodes += (end - start) // NODE_SIZE
            start = end

    def _write(self, node: int, sealed: list[memoryview]) -> None:
        """Write consecutive nodes from physical node ``node`` on, in one call."""
        offset = node * NODE_SIZE
        if offset != self._position:
            self._sink.seek(offset)
        self._sink.write(b"".join(sealed))
        self._position = offset + len(sealed) * NODE_SIZE


class ProtectedFileReader(io.BufferedIOBase):
    """Reads a protected file from ``source``, with random access.

    The metadata is verified on construction (and ``name``, unless None, must
    equal the embedded name); each node is decrypted and verified against its
    parent when first needed, a few are cached. Failures raise
    :class:`IntegrityError` with a message starting with ``role``. Closing the
    reader does not close ``source``.
    """

    def __init__(self, source: Source, key: bytes, name: str | None, *, role: str) -> None:
        super().__init__()
        self._source = source
        self._role = role
        _check_key(key)
        length = source.seek(0, io.SEEK_END)
        if not length or length % NODE_SIZE:
            raise self._error(f"length {length} is not a positive multiple of {NODE_SIZE}")
        meta = self._read(0, 1)
        if meta[: len(_MAGIC)] != _MAGIC:
            raise self._error("header is not version 1.0 with a user key (node 0)")
        if any(meta[_ZERO_FIELDS]) or any(meta[_PART.stop :]):
            raise self._error("header has unexpected fields (node 0)")
        try:
            part = AESGCM(_metadata_key(key, meta[_KEY_ID])).decrypt(
                _NONCE, meta[_PART] + meta[_GMAC], None
            )
        except InvalidTag:
            raise self._error(
                "integrity check failed (node 0: wrong key or corrupted file)"
            ) from None
        field: bytes
        size: int
        field, size, mht_key, mht_gmac = _PART_HEADER.unpack_from(part)
        embedded, nul, _ = field.partition(b"\0")
        if not nul:
            raise self._error("name is not NUL-terminated (node 0)")
        self._name = embedded.decode(errors="replace")
        if name is not None and embedded != name.encode():
            raise self._error(f"name mismatch: encrypted as {self._name!r}, opened as {name!r}")
        nodes, expected = length // NODE_SIZE, _node_count(size)
        if nodes < expected:
            raise self._error(f"is truncated ({nodes} of {expected} nodes)")
        if nodes > expected:
            raise self._error(f"has {nodes - expected} trailing nodes")
        self._size = size
        self._cmac = meta[_GMAC]
        self._root: bytes = mht_key + mht_gmac
        self._head = part[_PART_HEADER.size : _PART_HEADER.size + min(size, _HEAD)]
        self._position = 0
        self._mhts: OrderedDict[int, bytes] = OrderedDict()
        self._data: OrderedDict[int, bytes] = OrderedDict()

    @property
    def size(self) -> int:
        """The plaintext size."""
        return self._size

    @property
    def cmac(self) -> bytes:
        """The file's cmac (the metadata gmac)."""
        return self._cmac

    @property
    def name(self) -> str:
        """The name embedded in the file."""
        return self._name

    def readable(self) -> bool:
        """Always True."""
        return True

    def seekable(self) -> bool:
        """Always True."""
        return True

    def tell(self) -> int:
        """The plaintext position."""
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Move within the plaintext; the new position."""
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}
        if whence not in base:
            raise ValueError(f"invalid whence {whence}")
        if base[whence] + offset < 0:
            raise ValueError(f"negative seek position {base[whence] + offset}")
        self._position = base[whence] + offset
        return self._position

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes (all the rest if negative), fewer only at the end."""
        self._check_open()
        position = self._position
        end = self._size if size is None or size < 0 else min(self._size, position + size)
        parts = []
        if position < min(end, _HEAD):
            parts.append(self._head[position : min(end, _HEAD)])
            position = min(end, _HEAD)
        while position < end:
            first, skip = divmod(position - _HEAD, NODE_SIZE)
            group_end = first - first % _DATA_SLOTS + _DATA_SLOTS  # this MHT's data, exclusive
            last = min((end - 1 - _HEAD) // NODE_SIZE, group_end - 1)
            for plaintext in self._data_run(first, last):
                piece = plaintext[skip : skip + end - position]
                parts.append(piece)
                position += len(piece)
                skip = 0
        self._position = position
        return b"".join(parts)

    read1 = read

    def verify_all(self) -> None:
        """Decrypt and verify every node once."""
        self._check_open()
        count = _data_nodes(self._size)
        for first in range(0, count, _DATA_SLOTS):
            self._data_run(first, min(count, first + _DATA_SLOTS) - 1)

    def close(self) -> None:
        """Drop the cached plaintext (``source`` stays open)."""
        self._mhts.clear()
        self._data.clear()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed ProtectedFileReader")

    def _error(self, what: str) -> IntegrityError:
        return IntegrityError(f"{self._role}: teaclave-file-128 {what}")

    def _read(self, node: int, count: int) -> bytes:
        """``count`` raw nodes from physical node ``node`` on."""
        self._source.seek(node * NODE_SIZE)
        data = self._source.read(count * NODE_SIZE)
        if len(data) != count * NODE_SIZE:
            raise self._error(f"is truncated (node {node + len(data) // NODE_SIZE})")
        return data

    def _decrypt(self, slots: bytes, raw: bytes, node: int) -> list[bytes]:
        """Decrypt consecutive nodes (physical ``node`` on) with consecutive {key, gmac} slots."""
        view = memoryview(raw)
        sealed = bytearray(NODE_SIZE + _TAG_SIZE)  # one node and its tag, reused
        plaintexts: list[bytes] = []
        try:
            for start, slot in zip(
                range(0, len(view), NODE_SIZE), range(0, len(slots), _SLOT), strict=True
            ):
                sealed[:NODE_SIZE] = view[start : start + NODE_SIZE]
                sealed[NODE_SIZE:] = slots[slot + KEY_SIZE : slot + _SLOT]
                plaintexts.append(
                    AESGCM(slots[slot : slot + KEY_SIZE]).decrypt(_NONCE, sealed, None)
                )
        except InvalidTag:
            raise self._error(f"integrity check failed (node {node + len(plaintexts)})") from None
        return plaintexts

    def _mht(self, m: int) -> bytes:
        """The verified plaintext of MHT node ``m``."""
        cached = self._mhts.get(m)
        if cached is not None:
            self._mhts.move_to_end(m)
            return cached
        if m:
            parent, index = _child_slot(m)
            slot = self._mht(parent)[index * _SLOT : (index + 1) * _SLOT]
        else:
            slot = self._root
        node = _mht_node(m)
        (plaintext,) = self._decrypt(slot, self._read(node, 1), node)
        _remember(self._mhts, m, plaintext, _MHT_CACHE)
        return plaintext

    def _data_run(self, first: int, last: int) -> list[bytes]:
        """The verified plaintext of data nodes ``first..last`` (under one MHT node)."""
        cached = self._data.get(first)
        if first == last and cached is not None:
            return [cached]
        slots = self._mht(first // _DATA_SLOTS)[
            first % _DATA_SLOTS * _SLOT : (last % _DATA_SLOTS + 1) * _SLOT
        ]
        node = _data_node(first)
        run = self._decrypt(slots, self._read(node, last - first + 1), node)
        _remember(self._data, last, run[-1], _DATA_CACHE)
        return run


def _remember(cache: OrderedDict[int, bytes], key: int, value: bytes, limit: int) -> None:
    cache[key] = value
    if len(cache) > limit:
        cache.popitem(last=False)


def encrypt_stream(
    key: bytes, name: str, source: Reader, sink: Sink, *, chunk: int = 1 << 20
) -> bytes:
    """Write ``source`` to ``sink`` as a protected file named ``name``; returns the cmac."""
    writer = ProtectedFileWriter(key, name, sink)
    while data := source.read(chunk):
        writer.write(data)
    return writer.close()


def decrypt_stream(
    source: Source,
    key: bytes,
    name: str | None,
    sink: Writer,
    *,
    role: str,
    cmac: bytes | None = None,
    chunk: int = 1 << 20,
) -> bytes:
    """Decrypt the protected file ``source`` into ``sink``; returns its cmac.

    If ``cmac`` is given the file's must equal it ("cmac mismatch"). ``sink``
    receives each node's plaintext once it is verified, but a later node may
    still fail: on :class:`IntegrityError` discard everything written to it.
    """
    reader = ProtectedFileReader(source, key, name, role=role)
    if cmac is not None and reader.cmac != cmac:
        raise IntegrityError(f"{role}: cmac mismatch")
    while data := reader.read(chunk):
        sink.write(data)
    return reader.cmac
