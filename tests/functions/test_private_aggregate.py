"""builtin-private-aggregate: join on a key, group, aggregate, suppress groups under k."""

import csv
import io
from decimal import Decimal

import pytest
from builtin_helpers import call

from teaclave.core.errors import TeaclaveError

NAME = "builtin-private-aggregate"

BANK = """id,region,balance
1,north,100
2,north,250.5
3,south,80
4,north,10
5,south,7
6,east,1000
7,north,-3
"""
SHOP = """id,spent,visits
2,20,3
1,5.25,1
3,8,2
5,1,9
6,40,4
7,0.75,2
9,100,1
"""
POLL = """score,id
3,1
4,2
5,3
1,5
2,6
5,7
"""


def reference(tables: list[str], group_by: str, aggregates: list[str], k: int) -> list[list[str]]:
    """An independent nested-loop version (no duplicate keys in the test tables)."""
    parsed = [list(csv.DictReader(io.StringIO(table))) for table in tables]
    joined = []
    for row in parsed[0]:
        merged = dict(row)
        for other in parsed[1:]:
            match = [r for r in other if r["id"] == row["id"]]
            if not match:
                break
            merged.update(match[0])
        else:
            joined.append(merged)
    result = []
    for group in sorted({row[group_by] for row in joined}):
        rows = [row for row in joined if row[group_by] == group]
        if len(rows) < k:
            continue
        cells = [group]
        for aggregate in aggregates:
            function, _, column = aggregate.partition(":")
            values = [Decimal(row[column]) for row in rows] if column else []
            if function == "count":
                cells.append(str(len(rows)))
            elif function == "sum":
                cells.append(str(sum(values)))
            elif function == "mean":
                cells.append(str(round(sum(values) / len(values), 6)))
            else:
                cells.append(str(min(values) if function == "min" else max(values)))
        result.append(cells)
    return result


def aggregate(
    tables: list[str], group_by: str, aggregates: str, k: int, key: str = "id"
) -> tuple[str, list[list[str]]]:
    arguments = {
        "parties": len(tables),
        "key": key,
        "group_by": group_by,
        "aggregates": aggregates,
        "k": k,
    }
    inputs = {f"input_data{i}": table.encode() for i, table in enumerate(tables)}
    summary, outputs = call(NAME, arguments, inputs, ("output_result",))
    return summary, list(csv.reader(io.StringIO(outputs["output_result"].decode())))


@pytest.mark.parametrize(
    ("tables", "group_by", "aggregates", "k"),
    [
        ([BANK, SHOP], "region", "count,sum:spent,mean:balance", 2),
        ([BANK, SHOP], "region", "count,min:balance,max:spent,sum:visits", 3),
        ([BANK, SHOP, POLL], "region", "mean:score,count,mean:spent", 2),
        ([SHOP, BANK, POLL], "score", "count,sum:balance", 2),
        ([BANK, POLL], "region", "count", 10),
    ],
)
def test_matches_the_reference(tables: list[str], group_by: str, aggregates: str, k: int) -> None:
    summary, rows = aggregate(tables, group_by, aggregates, k)
    header = [
        group_by,
        *(a if ":" not in a else "{}({})".format(*a.split(":")) for a in aggregates.split(",")),
    ]
    expected = reference(tables, group_by, aggregates.split(","), k)
    assert rows == [header, *expected]
    assert summary == f"{len(expected)} groups released"


def test_small_groups_are_suppressed() -> None:
    # Bank ⋈ shop: north has ids 1, 2, 7 and south 3, 5, east only 6.
    _, rows = aggregate([BANK, SHOP], "region", "count,mean:spent", 2)
    assert rows == [
        ["region", "count", "mean(spent)"],
        ["north", "3", "8.666667"],
        ["south", "2", "4.500000"],
    ]


def test_grouping_by_the_key_releases_nothing() -> None:
    assert aggregate([BANK, SHOP], "id", "count", 2) == ("0 groups released", [["id", "count"]])


def test_quoted_fields_crlf_and_blank_lines() -> None:
    left = 'id,name\r\n1,"a, b"\r\n\r\n2,"a, b"\r\n3,c\r\n'
    right = "id,value\n1,2\n2,3\n3,4\n"
    _, rows = aggregate([left, right], "name", "sum:value", 2)
    assert rows == [["name", "sum(value)"], ["a, b", "5"]]


@pytest.mark.parametrize(
    ("tables", "arguments", "message"),
    [
        ([BANK, SHOP], {"k": 1}, r"^k must be at least 2$"),
        ([BANK], {}, r"^parties must be at least 2$"),
        (
            [BANK, SHOP],
            {"group_by": "city"},
            r"^unknown column 'city': no table has it \(input_data0 \(id, region, balance\); "
            r"input_data1 \(id, spent, visits\)\)$",
        ),
        ([BANK, SHOP], {"aggregates": "sum:amount"}, r"^unknown column 'amount'"),
        (
            [BANK, BANK],
            {"aggregates": "count"},
            r"^column 'region' is ambiguous: input_data0, input_data1 all have it$",
        ),
        ([BANK, SHOP], {"key": "region"}, r"^input_data1 has no key column 'region'$"),
        ([BANK, SHOP], {"aggregates": "median:spent"}, r"^unknown aggregate 'median:spent'"),
        (
            [BANK, SHOP],
            {"aggregates": "count:spent"},
            r"^aggregate 'count:spent' must be written count$",
        ),
        ([BANK, SHOP], {"aggregates": "sum"}, r"^aggregate 'sum' must be written sum:<column>$"),
        ([BANK, SHOP], {"aggregates": "count, count"}, r"^aggregates are repeated$"),
        (
            [BANK, "id,spent\n1,x\n"],
            {},
            r"^input_data1 line 2 column 'spent' is not a decimal number$",
        ),
        (
            [BANK, "id,spent\n1,NaN\n"],
            {},
            r"^input_data1 line 2 column 'spent' is not a decimal number$",
        ),
        ([BANK, "id,spent\n1,3\n1,4\n"], {}, r"^input_data1 line 3 repeats the key of line 2$"),
        (["id,region\n1,a\n\n1,b\n", SHOP], {}, r"^input_data0 line 4 repeats the key of line 2$"),
        ([BANK, "id,spent\n1\n"], {}, r"^input_data1 line 2 has 1 fields, its header 2$"),
        ([BANK, 'id,spent\n1,"2\n'], {}, r"^input_data1 line 2 is not valid CSV"),
        ([BANK, ""], {}, r"^input_data1 is empty \(no header row\)$"),
        ([BANK, "id,id\n"], {}, r"^input_data1 repeats a column name in its header$"),
    ],
)
def test_errors(tables: list[str], arguments: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "parties": len(tables),
        "key": "id",
        "group_by": "region",
        "aggregates": "sum:spent",
        "k": 2,
    }
    values.update(arguments)
    inputs = {f"input_data{i}": table.encode() for i, table in enumerate(tables)}
    with pytest.raises(TeaclaveError, match=message):
        call(NAME, values, inputs, ("output_result",))


def test_non_utf8_and_argument_types() -> None:
    arguments = {"parties": 2, "key": "id", "group_by": "region", "aggregates": "count", "k": 2}
    inputs = {"input_data0": b"id,region\n1,\xff\n", "input_data1": SHOP.encode()}
    with pytest.raises(TeaclaveError, match=r"^input_data0 is not UTF-8 text$"):
        call(NAME, arguments, inputs, ("output_result",))
    with pytest.raises(TeaclaveError, match="'k' must be a non-negative integer"):
        call(NAME, {**arguments, "k": -2}, inputs, ("output_result",))
    with pytest.raises(TeaclaveError, match="missing key 'aggregates'"):
        call(NAME, {"parties": 2, "key": "id", "group_by": "region", "k": 2}, inputs)
