"""builtin-ordered-set-join (reference §7.8) over the in-memory runtime."""

import json

import pytest
from teaclave_fixtures import FIXTURES

from teaclave.core.errors import TeaclaveError
from teaclave.functions import registry
from teaclave.functions.ordered_set_join import INPUT1, INPUT2, OUTPUT
from teaclave.functions.runtime import MemoryRuntime

JOIN = FIXTURES / "functions" / "ordered_set_join"
TRAIN = FIXTURES / "functions" / "gbdt_training" / "train.txt"


def join(
    data1: bytes, data2: bytes, *, left: int = 0, right: int = 0, ascending: bool = True, drop: bool
) -> tuple[str, bytes]:
    runtime = MemoryRuntime({INPUT1: data1, INPUT2: data2}, frozenset({OUTPUT}))
    arguments = {"left_column": left, "right_column": right, "ascending": ascending, "drop": drop}
    summary = registry.lookup("builtin-ordered-set-join").invoke(json.dumps(arguments), runtime)
    output = runtime.output(OUTPUT)
    assert output is not None
    return summary, output


def test_fixture_with_drop_is_the_gbdt_training_set() -> None:
    summary, output = join(
        (JOIN / "join0.csv").read_bytes(), (JOIN / "join1.csv").read_bytes(), drop=True
    )
    assert summary == "120 records"
    assert output.strip() == TRAIN.read_bytes().strip()


def test_fixture_without_drop_keeps_the_left_key() -> None:
    data1 = (JOIN / "join0.csv").read_bytes()
    summary, output = join(data1, (JOIN / "join1.csv").read_bytes(), drop=False)
    assert summary == "120 records"
    keys = [line.split(b",")[0] for line in data1.splitlines()]
    expected = [
        key + b"," + row for key, row in zip(keys, TRAIN.read_bytes().splitlines(), strict=True)
    ]
    assert output.splitlines() == expected


def test_other_columns_descending_duplicates_and_quoting() -> None:
    data1 = b'x,c\ny,b\nz,b\n"q,1",a\n'
    data2 = b"b,1\nb,2\nb,3\na,4\n"
    summary, output = join(data1, data2, left=1, right=0, ascending=False, drop=False)
    # 1:1: each match advances both sides, so the third "b" on the right finds no partner.
    assert summary == "3 records"
    assert output == b'y,b,1\nz,b,2\n"q,1",a,4\n'


def test_no_match_and_blank_lines() -> None:
    assert join(b"1,a\n\n3,c\n", b"2,b\r\n4,d\r\n", drop=True) == ("0 records", b"")


@pytest.mark.parametrize(
    ("data1", "data2", "message"),
    [
        (b"", b"1,a\n", "input1 is empty"),
        (b"\n", b"1,a\n", "input1 is empty"),
        (b"1,a\n", b"", "input2 is empty"),
        (b"1,a\n0,b\n", b"1,c\n", "input_data1 line 2 is out of order"),
        (b"3,a\n", b"0,c\n2,d\n1,e\n", "input_data2 line 3 is out of order"),
        (b"1,a\n", b"\xff,b\n", "input_data2 is not UTF-8 text"),
        (b'"1,a\n', b"1,b\n", "input_data1 line 1 is not valid CSV: unexpected end of data"),
    ],
)
def test_errors(data1: bytes, data2: bytes, message: str) -> None:
    with pytest.raises(TeaclaveError) as info:
        join(data1, data2, drop=True)
    assert info.value.message == message


def test_missing_join_column() -> None:
    with pytest.raises(TeaclaveError, match=r"^input_data2 line 2 has no column 1$"):
        join(b"a,1\nb,1\n", b"1,a\n2\n", right=1, drop=True)


@pytest.mark.parametrize("value", [-1, "0", 1.5, True])
def test_columns_must_be_non_negative_integers(value: object) -> None:
    function = registry.lookup("builtin-ordered-set-join")
    arguments = {"left_column": value, "right_column": 0, "ascending": True, "drop": True}
    with pytest.raises(TeaclaveError) as info:
        function.parse_arguments(json.dumps(arguments))
    assert info.value.message == (
        "Cannot deserialize arguments: 'left_column' must be a non-negative integer"
    )
