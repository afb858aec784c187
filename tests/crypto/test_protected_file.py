"""teaclave-file-128 (SGX protected files, reference §5.3): fixtures, round trips, tampering."""

import io
import os
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC
from teaclave_file_fixtures import KEY, PROTECTED_FILES

from teaclave.core.errors import Status, TeaclaveError
from teaclave.crypto.protected_file import (
    NODE_SIZE,
    IntegrityError,
    ProtectedFileReader,
    ProtectedFileWriter,
    decrypt_stream,
    encrypt_stream,
)

ROLE = "input 'input_data1'"
NAME = "data.enc"
ONE_MHT = 3072 + 96 * NODE_SIZE  # data nodes 0..95: the root MHT is full
TWO_MHTS = 3072 + 97 * NODE_SIZE
MULTI_LEVEL = 3072 + (96 * 33 + 1) * NODE_SIZE - 1000  # MHT 33 hangs under MHT 1
SIZES = [0, 1, 3071, 3072, 3073, ONE_MHT, TWO_MHTS, MULTI_LEVEL]


@pytest.fixture(scope="module")
def content() -> bytes:
    """Random content for every size (generated once)."""
    return os.urandom(max(SIZES))


def encrypt(data: bytes, name: str = NAME, piece: int = 1 << 20) -> tuple[bytes, bytes]:
    sink = io.BytesIO()
    cmac = encrypt_stream(KEY, name, io.BytesIO(data), sink, chunk=piece)
    return sink.getvalue(), cmac


def decrypt(data: bytes, name: str | None = NAME, cmac: bytes | None = None) -> bytes:
    sink = io.BytesIO()
    decrypt_stream(io.BytesIO(data), KEY, name, sink, role=ROLE, cmac=cmac)
    return sink.getvalue()


def verify(data: bytes) -> None:
    ProtectedFileReader(io.BytesIO(data), KEY, NAME, role=ROLE).verify_all()


def nodes_for(size: int) -> int:
    """Metadata, then each data node, plus one MHT node per (started) 96 data nodes."""
    data = max(0, -(-(size - 3072) // NODE_SIZE))
    return 1 + data + -(-data // 96)


@pytest.mark.parametrize(
    ("encrypted", "plaintext", "cmac"), PROTECTED_FILES, ids=lambda v: getattr(v, "name", "")
)
def test_fixture(encrypted: Path, plaintext: Path, cmac: bytes) -> None:
    with encrypted.open("rb") as source:
        reader = ProtectedFileReader(source, KEY, encrypted.name, role=ROLE)
        assert (reader.cmac, reader.name, reader.size) == (
            cmac,
            encrypted.name,
            plaintext.stat().st_size,
        )
        reader.verify_all()
        assert reader.read() == plaintext.read_bytes()
    assert decrypt(encrypted.read_bytes(), encrypted.name, cmac) == plaintext.read_bytes()


def test_fixture_with_mht_reads_as_text() -> None:
    encrypted, plaintext, _ = next(f for f in PROTECTED_FILES if f[0].stat().st_size > NODE_SIZE)
    with (
        encrypted.open("rb") as source,
        io.TextIOWrapper(ProtectedFileReader(source, KEY, None, role=ROLE)) as text,
    ):
        assert text.readlines() == plaintext.read_text().splitlines(keepends=True)


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(content: bytes, size: int) -> None:
    data = content[:size]
    encrypted, cmac = encrypt(data, piece=5000)  # pieces not aligned with nodes
    assert len(encrypted) == nodes_for(size) * NODE_SIZE
    assert encrypted[80:96] == cmac
    assert decrypt(encrypted, cmac=cmac) == data


def test_writes_of_any_size(content: bytes) -> None:
    data = content[:TWO_MHTS]
    sink = io.BytesIO()
    sizes = random.Random(1)
    with ProtectedFileWriter(KEY, NAME, sink) as writer:
        position = 0
        while position < len(data):
            step = sizes.choice([0, 1, 100, 3071, 4096, 4097, 50000])
            assert writer.write(data[position : position + step]) == len(
                data[position : position + step]
            )
            position += step
    assert decrypt(sink.getvalue(), cmac=writer.close()) == data


def test_same_plaintext_encrypts_differently() -> None:
    first, second = encrypt(b"same"), encrypt(b"same")
    assert first[0] != second[0]
    assert first[1] != second[1]


def _spec_node(encrypted: bytes, physical: int, slot: bytes) -> bytes:
    """Decrypt node ``physical`` with the {key, gmac} of its parent slot (§5.3)."""
    node = encrypted[physical * NODE_SIZE : (physical + 1) * NODE_SIZE]
    return AESGCM(slot[:16]).decrypt(bytes(12), node + slot[16:], None)


def _slot(mht: bytes, index: int) -> bytes:
    return mht[index * 32 : index * 32 + 32]


def test_multi_level_layout_follows_the_reference(content: bytes) -> None:
    encrypted, _ = encrypt(content[:MULTI_LEVEL])
    # metadata key = AES-CMAC(user key, kdf input with the header's key_id)
    kdf = CMAC(algorithms.AES(KEY))
    kdf.update(
        (1).to_bytes(4, "little")
        + b"SGX-PROTECTED-FS-METADATA-KEY".ljust(64, b"\0")
        + bytes(12)
        + encrypted[16:48]
        + (128).to_bytes(4, "little")
        + bytes(4)
    )
    part = AESGCM(kdf.finalize()).decrypt(bytes(12), encrypted[96:3468] + encrypted[80:96], None)
    assert part[:260] == NAME.encode().ljust(260, b"\0")
    assert int.from_bytes(part[260:268], "little") == MULTI_LEVEL
    assert part[300:] == content[:3072]
    root = _spec_node(encrypted, 1, part[268:300])
    mht1 = _spec_node(encrypted, 98, _slot(root, 96))  # MHT 1 under the root, child slot 0
    mht32 = _spec_node(encrypted, 1 + 32 * 97, _slot(root, 96 + 31))
    mht33 = _spec_node(encrypted, 1 + 33 * 97, _slot(mht1, 96))  # under MHT ⌊32/32⌋ = 1
    assert _slot(mht1, 96 + 1) == bytes(32)  # MHT 34 does not exist
    for mht, d in ((root, 0), (root, 95), (mht1, 96), (mht32, 32 * 96 + 95), (mht33, 33 * 96)):
        plaintext = _spec_node(encrypted, d + 2 + d // 96, _slot(mht, d % 96))
        expected = content[3072 + d * NODE_SIZE : MULTI_LEVEL][:NODE_SIZE]
        assert plaintext == expected + bytes(NODE_SIZE - len(expected))
    assert len(encrypted) == (33 * 96 + 2 + 33 + 1) * NODE_SIZE  # last data node is the last


def test_random_access(content: bytes) -> None:
    data = content[:TWO_MHTS]
    encrypted, _ = encrypt(data)
    reader = ProtectedFileReader(io.BytesIO(encrypted), KEY, NAME, role=ROLE)
    rng = random.Random(7)
    points = [0, 3071, 3072, 3073, 3072 + NODE_SIZE - 1, ONE_MHT - 1, ONE_MHT, len(data) - 1]
    for start in points + [rng.randrange(len(data)) for _ in range(200)]:
        length = rng.choice([1, 2, 100, NODE_SIZE, NODE_SIZE + 1, 3 * NODE_SIZE, 1 << 20])
        assert reader.seek(start) == start
        assert reader.read(length) == data[start : start + length]
        assert reader.tell() == min(start + length, len(data))
    assert reader.seek(-10, io.SEEK_END) == len(data) - 10
    assert reader.read(4) == data[-10:-6]
    assert reader.seek(2, io.SEEK_CUR) == len(data) - 4
    assert reader.read() == data[-4:]
    reader.seek(len(data) + 5)
    assert (reader.read(), reader.tell()) == (b"", len(data) + 5)
    with pytest.raises(ValueError, match="negative seek position"):
        reader.seek(-1)
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)


def test_nodes_are_decrypted_lazily(content: bytes) -> None:
    data = content[:TWO_MHTS]
    encrypted = bytearray(encrypt(data)[0])
    encrypted[-1] ^= 1  # the last data node, under MHT 1
    reader = ProtectedFileReader(io.BytesIO(bytes(encrypted)), KEY, NAME, role=ROLE)
    assert reader.read(ONE_MHT) == data[:ONE_MHT]
    with pytest.raises(IntegrityError, match=rf"^{ROLE}: .* integrity check failed \(node 99\)$"):
        reader.read()
    with pytest.raises(IntegrityError):
        reader.verify_all()


def _tamper_points(size: int) -> list[int]:
    used = (size - 3072) % NODE_SIZE  # plaintext bytes in the last data node, then padding
    specific = [0, 7, 8, 9, 10, 11, 12, 14, 16, 47, 48, 64, 80, 95, 96, 355, 3467, 3468, 4095]
    return [
        *specific,
        NODE_SIZE + 5,  # root MHT
        98 * NODE_SIZE + 4000,  # MHT 1
        2 * NODE_SIZE,  # data node 0
        (nodes_for(size) - 1) * NODE_SIZE + used + 10,  # padding, last node
        *range(NODE_SIZE, nodes_for(size) * NODE_SIZE, 4093),
    ]


def test_a_flipped_byte_anywhere_is_detected(content: bytes) -> None:
    size = TWO_MHTS + 100
    data = content[:size]
    encrypted, cmac = encrypt(data)
    for point in _tamper_points(size):
        tampered = bytearray(encrypted)
        tampered[point] ^= 0x10
        with pytest.raises(IntegrityError) as info:
            verify(bytes(tampered))
        assert info.value.status is Status.FAILED_PRECONDITION
        assert info.value.message.startswith(f"{ROLE}: teaclave-file-128 "), point
        assert "\n" not in info.value.message
    assert decrypt(encrypted, cmac=cmac) == data


def test_errors_carry_no_plaintext() -> None:
    secret = b"the secret value " * 300
    encrypted = bytearray(encrypt(secret)[0])
    encrypted[2 * NODE_SIZE] ^= 1
    with pytest.raises(IntegrityError) as info:
        decrypt(bytes(encrypted))
    assert "secret" not in info.value.message


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (lambda e: e[:-1], r"length \d+ is not a positive multiple of 4096"),
        (lambda e: e[:-NODE_SIZE], r"is truncated \(99 of 100 nodes\)"),
        (lambda e: e[: 50 * NODE_SIZE] + e[51 * NODE_SIZE :], r"is truncated \(99 of 100 nodes\)"),
        (lambda e: e + bytes(NODE_SIZE), r"has 1 trailing nodes"),
        (lambda e: b"", r"length 0 is not a positive multiple of 4096"),
        (lambda e: bytes(NODE_SIZE), r"header is not version 1\.0 with a user key"),
    ],
)
def test_truncated_or_malformed(
    content: bytes, cut: Callable[[bytes], bytes], message: str
) -> None:
    encrypted, _ = encrypt(content[:TWO_MHTS])
    with pytest.raises(IntegrityError, match=rf"^{ROLE}: teaclave-file-128 {message}"):
        decrypt(cut(encrypted))


def test_wrong_key_name_or_cmac() -> None:
    encrypted, cmac = encrypt(b"hello")
    with pytest.raises(IntegrityError, match=r"integrity check failed \(node 0: wrong key"):
        ProtectedFileReader(io.BytesIO(encrypted), b"\x01" * 16, NAME, role=ROLE)
    with pytest.raises(
        IntegrityError,
        match=rf"^{ROLE}: teaclave-file-128 name mismatch: encrypted as 'data.enc', "
        "opened as 'other.enc'$",
    ):
        ProtectedFileReader(io.BytesIO(encrypted), KEY, "other.enc", role=ROLE)
    assert decrypt(encrypted, None) == b"hello"  # no name check
    with pytest.raises(IntegrityError, match=rf"^{ROLE}: cmac mismatch$"):
        decrypt(encrypted, cmac=bytes(16))
    assert decrypt(encrypted, cmac=cmac) == b"hello"


def test_invalid_writer_arguments() -> None:
    for key, name, message in [
        (bytes(32), NAME, "key must be 16 bytes, got 32"),
        (KEY, "", "name must be 1 to 259 bytes"),
        (KEY, "x" * 260, "name must be 1 to 259 bytes"),
        (KEY, "a\0b", "without NUL"),
    ]:
        with pytest.raises(TeaclaveError, match=message) as info:
            ProtectedFileWriter(key, name, io.BytesIO())
        assert info.value.status is Status.INVALID_ARGUMENT
    assert decrypt(encrypt(b"x", "é" * 129)[0], "é" * 129) == b"x"  # 258 bytes of UTF-8


def test_writer_lifecycle() -> None:
    sink = io.BytesIO()
    writer = ProtectedFileWriter(KEY, NAME, sink)
    writer.write(b"abc")
    cmac = writer.close()
    assert writer.close() == cmac
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")
    failed = io.BytesIO()

    def fail_midway() -> None:
        with ProtectedFileWriter(KEY, NAME, failed) as writer:
            writer.write(bytes(10000))
            raise RuntimeError("the source failed")

    with pytest.raises(RuntimeError, match="the source failed"):
        fail_midway()
    assert failed.getvalue()[:8] != b"ELIF_XGS"  # no metadata: the caller discards it


def test_memory_is_bounded(tmp_path: Path) -> None:
    piece = os.urandom(1 << 20)
    target = tmp_path / NAME
    tracemalloc.start()
    try:
        with target.open("w+b") as sink:
            with ProtectedFileWriter(KEY, NAME, sink) as writer:
                for _ in range(64):
                    writer.write(piece)
            writer_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            reader = ProtectedFileReader(sink, KEY, NAME, role=ROLE)
            while chunk := reader.read(1 << 20):
                assert chunk == piece
            reader_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert target.stat().st_size == nodes_for(64 << 20) * NODE_SIZE
    assert writer_peak < 8 << 20
    assert reader_peak < 8 << 20
