"""The block-wise ordered-set functions give exactly what a step-by-step walk gives.

Random sorted inputs with duplicates, mixed-case hex, CRLF and blank lines are
run with tiny blocks (so windows and blocks end everywhere) and compared with
the walk of reference §7.7/§7.8 written plainly here.
"""

import csv
import io
import random

import pytest
from builtin_helpers import call

from teaclave.core.errors import TeaclaveError
from teaclave.functions import streams

PSI = "builtin-ordered-set-intersect"
JOIN = "builtin-ordered-set-join"


@pytest.fixture(params=[3, 17, 1 << 20], ids=["tiny", "small", "default"])
def block_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(streams, "BLOCK_BYTES", request.param)
    return int(request.param)


def walk_marks(items1: list[bytes], items2: list[bytes], ascending: bool) -> tuple[bytes, bytes]:
    """§7.7's merge walk over decoded items."""
    marks1, marks2 = bytearray(b"0" * len(items1)), bytearray(b"0" * len(items2))
    i = j = 0
    while i < len(items1) and j < len(items2):
        if items1[i] == items2[j]:
            marks1[i] = marks2[j] = ord("1")
            i, j = i + 1, j + 1
        elif (items1[i] < items2[j]) == ascending:
            i += 1
        else:
            j += 1
    return bytes(marks1), bytes(marks2)


def random_hex_list(rng: random.Random, ascending: bool) -> list[bytes]:
    return sorted(
        (bytes([rng.randrange(4)] * rng.randrange(3)) for _ in range(rng.randrange(40))),
        reverse=not ascending,
    )


def hex_text(rng: random.Random, items: list[bytes]) -> bytes:
    lines = [item.hex().upper() if rng.random() < 0.3 else item.hex() for item in items]
    return b"".join(line.encode() + rng.choice([b"\n", b"\r\n"]) for line in lines)


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("order", ["ascending", "desending"])
def test_psi_equals_the_walk(seed: int, order: str, block_bytes: int) -> None:
    rng = random.Random(seed)
    ascending = order == "ascending"
    items1, items2 = random_hex_list(rng, ascending), random_hex_list(rng, ascending)
    marks1, marks2 = walk_marks(items1, items2, ascending)
    summary, outputs = call(
        PSI,
        {"order": order},
        {"input_data1": hex_text(rng, items1), "input_data2": hex_text(rng, items2)},
        ("output_result1", "output_result2"),
    )
    assert summary == f"{marks1.count(b'1')} common items"
    assert (outputs["output_result1"], outputs["output_result2"]) == (marks1, marks2)


def test_psi_long_keys_of_different_lengths(block_bytes: int) -> None:
    items1 = sorted(bytes.fromhex(x) for x in ["00", "0000", "01", "ff", "ff00"])
    items2 = sorted(bytes.fromhex(x) for x in ["0000", "00ff", "ff00", "ff0000"])
    inputs = {
        "input_data1": b"".join(i.hex().encode() + b"\n" for i in items1),
        "input_data2": b"".join(i.hex().encode() + b"\n" for i in items2),
    }
    _, outputs = call(PSI, {"order": "ascending"}, inputs, ("output_result1", "output_result2"))
    assert (outputs["output_result1"], outputs["output_result2"]) == walk_marks(
        items1, items2, True
    )


@pytest.mark.parametrize(
    ("data1", "data2", "message"),
    [
        (b"aa\nbb\nab\n", b"", r"^Invalid ordering$"),
        (b"aa\nbb\n", b"00\n0\n", r"^input_data2 line 2 is not a hex string$"),
        (b"aa\nb g\n", b"", r"^input_data1 line 2 is not a hex string$"),
        (b"aa\nbb\r", b"", r"^input_data1 line 2 is not a hex string$"),
        (b"aa\n\xff\n", b"", r"^input_data1 line 2 is not a hex string$"),
        (b"AB\nab\naa\n", b"", r"^Invalid ordering$"),
    ],
)
def test_psi_errors(data1: bytes, data2: bytes, message: str, block_bytes: int) -> None:
    with pytest.raises(TeaclaveError, match=message):
        call(
            PSI,
            {"order": "ascending"},
            {"input_data1": data1, "input_data2": data2},
            ("output_result1", "output_result2"),
        )


def walk_join(
    rows1: list[list[str]],
    rows2: list[list[str]],
    left: int,
    right: int,
    ascending: bool,
    drop: bool,
) -> list[list[str]]:
    """§7.8's 1:1 merge join."""
    joined, i, j = [], 0, 0
    while i < len(rows1) and j < len(rows2):
        key1, key2 = rows1[i][left], rows2[j][right]
        if key1 == key2:
            first = rows1[i][:left] + rows1[i][left + 1 :] if drop else rows1[i]
            joined.append(first + rows2[j][:right] + rows2[j][right + 1 :])
            i, j = i + 1, j + 1
        elif (key1 < key2) == ascending:
            i += 1
        else:
            j += 1
    return joined


def random_table(rng: random.Random, column: int, ascending: bool) -> list[list[str]]:
    keys = sorted(
        (rng.choice("abcdef") for _ in range(rng.randrange(1, 30))), reverse=not ascending
    )
    rows = []
    for key in keys:
        row = [rng.choice(["x", "y, z", 'q"t', ""]) for _ in range(3)]
        row.insert(column, key)
        rows.append(row)
    return rows


def csv_text(rng: random.Random, rows: list[list[str]]) -> bytes:
    sink = io.StringIO()
    csv.writer(sink, lineterminator=rng.choice(["\n", "\r\n"])).writerows(rows)
    return sink.getvalue().encode()


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("ascending", [True, False])
def test_join_equals_the_walk(seed: int, ascending: bool, block_bytes: int) -> None:
    rng = random.Random(seed)
    left, right, drop = rng.randrange(2), rng.randrange(2), rng.random() < 0.5
    rows1, rows2 = random_table(rng, left, ascending), random_table(rng, right, ascending)
    if seed % 3:  # plain fields only: the comma-splitting path
        rows1 = [[field.replace('"', "").replace(",", "") for field in row] for row in rows1]
        rows2 = [[field.replace('"', "").replace(",", "") for field in row] for row in rows2]
    expected = walk_join(rows1, rows2, left, right, ascending, drop)
    arguments = {"left_column": left, "right_column": right, "ascending": ascending, "drop": drop}
    summary, outputs = call(
        JOIN,
        arguments,
        {"input_data1": csv_text(rng, rows1), "input_data2": csv_text(rng, rows2)},
        ("output_result",),
    )
    assert summary == f"{len(expected)} records"
    assert list(csv.reader(io.StringIO(outputs["output_result"].decode()))) == expected


def test_join_does_not_read_past_the_end_of_the_walk(block_bytes: int) -> None:
    """Input 2's disorder lies beyond input 1's last key: the walk never reaches it."""
    arguments = {"left_column": 0, "right_column": 0, "ascending": True, "drop": False}
    inputs = {"input_data1": b"a,1\nb,2\n", "input_data2": b"b,3\nc,4\na,5\n"}
    assert call(JOIN, arguments, inputs, ("output_result",))[0] == "1 records"
    inputs["input_data1"] += b"d,3\n"  # now the walk reaches it
    with pytest.raises(TeaclaveError, match=r"^input_data2 line 3 is out of order$"):
        call(JOIN, arguments, inputs, ("output_result",))
