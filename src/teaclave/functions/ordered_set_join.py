"""``builtin-ordered-set-join`` (reference §7.8): a 1:1 merge join of two sorted CSV files.

Each input is header-less UTF-8 CSV sorted on its join column (string
comparison, ascending or descending per ``ascending``; checked as the walk
reads it). For each pair of records with equal keys one row is written:
record 1 (without its join column if ``drop``) followed by record 2 without
its join column; then both sides advance. The walk ends with either input
(the rest of the other is not read). Records are read and written one at a
time (linear time, constant extra memory).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from teaclave.core.errors import invalid_argument
from teaclave.functions.builtin import Builtin, Usize
from teaclave.functions.runtime import Runtime

INPUT1, INPUT2 = "input_data1", "input_data2"
OUTPUT = "output_result"

_Record = tuple[str, list[str]]


@dataclass(frozen=True)
class OrderedSetJoinArguments:
    """Join columns (0-based), the sort order, and whether record 1 loses its join column."""

    left_column: Usize
    right_column: Usize
    ascending: bool
    drop: bool


def _records(stream: BinaryIO, name: str, column: int, ascending: bool) -> Iterator[_Record]:
    """(join key, record) for each record of ``stream``, checked to be sorted on ``column``."""
    reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""), strict=True)
    previous: str | None = None
    try:
        for record in reader:
            if not record:  # a blank line
                continue
            if column >= len(record):
                raise invalid_argument(f"{name} line {reader.line_num} has no column {column}")
            key = record[column]
            if previous is not None and (key < previous if ascending else key > previous):
                raise invalid_argument(f"{name} line {reader.line_num} is out of order")
            previous = key
            yield key, record
    except UnicodeDecodeError:
        raise invalid_argument(f"{name} is not UTF-8 text") from None
    except csv.Error as exc:
        raise invalid_argument(f"{name} line {reader.line_num} is not valid CSV: {exc}") from None


def _without(record: list[str], column: int) -> list[str]:
    return record[:column] + record[column + 1 :]


def ordered_set_join(arguments: OrderedSetJoinArguments, runtime: Runtime) -> str:
    """Write the joined rows to ``output_result``; returns "<n> records"."""
    left, right, ascending = arguments.left_column, arguments.right_column, arguments.ascending
    records1 = _records(runtime.open_input(INPUT1), INPUT1, left, ascending)
    records2 = _records(runtime.open_input(INPUT2), INPUT2, right, ascending)
    with io.TextIOWrapper(runtime.create_output(OUTPUT), encoding="utf-8", newline="") as text:
        writer = csv.writer(text, lineterminator="\n")
        record1, record2 = next(records1, None), next(records2, None)
        if record1 is None:
            raise invalid_argument("input1 is empty")
        if record2 is None:
            raise invalid_argument("input2 is empty")
        count = 0
        while record1 is not None and record2 is not None:
            (key1, fields1), (key2, fields2) = record1, record2
            if key1 == key2:
                joined = _without(fields1, left) if arguments.drop else fields1
                writer.writerow(joined + _without(fields2, right))
                count += 1
                record1 = next(records1, None)
                record2 = next(records2, None) if record1 is not None else None
            elif (key1 < key2) == ascending:
                record1 = next(records1, None)
            else:
                record2 = next(records2, None)
    return f"{count} records"


BUILTIN = Builtin(
    "builtin-ordered-set-join",
    OrderedSetJoinArguments,
    ordered_set_join,
    inputs=(INPUT1, INPUT2),
    outputs=(OUTPUT,),
)
