"""``builtin-ordered-set-join`` (reference §7.8): a 1:1 merge join of two sorted CSV files.

Each input is header-less UTF-8 CSV sorted on its join column (string
comparison, ascending or descending per ``ascending``; checked as the walk
reads it). For each pair of records with equal keys one row is written:
record 1 (without its join column if ``drop``) followed by record 2 without
its join column; then both sides advance. The walk ends with either input
(the rest of the other is not checked). Records are
parsed and matched a block at a time (:mod:`teaclave.functions.merge`); a bad
record fails the task when the walk reaches it.
"""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import BinaryIO

from teaclave.core.errors import TeaclaveError, invalid_argument
from teaclave.functions.builtin import Builtin, Usize
from teaclave.functions.merge import Cursor, Window, first_disorder, merge
from teaclave.functions.runtime import Runtime
from teaclave.functions.streams import decoded_blocks, text_lines

INPUT1, INPUT2 = "input_data1", "input_data2"
OUTPUT = "output_result"

_Row = tuple[str, ...]
"""A record: tuples of strings leave the garbage collector's view, unlike lists."""

_BATCH = 16384
"""Records per block."""


@dataclass(frozen=True)
class OrderedSetJoinArguments:
    """Join columns (0-based), the sort order, and whether record 1 loses its join column."""

    left_column: Usize
    right_column: Usize
    ascending: bool
    drop: bool


def _csv_batches(
    texts: Iterator[str], name: str, lines_before: int
) -> Iterator[tuple[list[_Row], list[int], TeaclaveError | None]]:
    """Batches of the records of ``texts`` parsed by :mod:`csv` (quotes, CR, NUL)."""
    reader = csv.reader(text_lines(texts), strict=True)
    while True:
        records: list[_Row] = []
        lines: list[int] = []
        try:
            for record in islice(reader, _BATCH):
                if record:  # not a blank line
                    records.append(tuple(record))
                    lines.append(lines_before + reader.line_num)
        except csv.Error as exc:
            line = lines_before + reader.line_num
            yield records, lines, invalid_argument(f"{name} line {line} is not valid CSV: {exc}")
            return
        if not records:
            return
        yield records, lines, None


def _batches(
    stream: BinaryIO, name: str
) -> Iterator[tuple[list[_Row], list[int], TeaclaveError | None]]:
    """Batches of (records, their line numbers, the error after them) of ``stream``.

    Blocks without quotes, carriage returns or NULs are split on commas, which
    is what :mod:`csv` makes of them; from the first other block on, :mod:`csv` parses.
    """
    blocks, lines_before = decoded_blocks(stream, name), 0
    for text in blocks:
        if '"' in text or "\r" in text or "\0" in text:
            yield from _csv_batches(chain([text], blocks), name, lines_before)
            return
        raw = text.split("\n")
        if text.endswith("\n"):
            raw.pop()
        if "" in raw:  # blank lines hold no record
            lines = [lines_before + i for i, line in enumerate(raw, start=1) if line]
        else:
            lines = list(range(lines_before + 1, lines_before + len(raw) + 1))
        yield [tuple(line.split(",")) for line in raw if line], lines, None
        lines_before += len(raw)


def _blocks(stream: BinaryIO, name: str, column: int, ascending: bool) -> Iterator[Window[_Row]]:
    """Blocks of (join keys, records) of ``stream``; a bad record raises when reached."""
    previous: str | None = None
    for batch, lines, failure in _batches(stream, name):
        records, error = batch, failure
        if records and min(map(len, records)) <= column:
            short = next(i for i, record in enumerate(records) if len(record) <= column)
            records, error = (
                records[:short],
                invalid_argument(f"{name} line {lines[short]} has no column {column}"),
            )
        keys = [record[column] for record in records]
        disorder = first_disorder(keys, previous, ascending)
        if disorder is not None:
            keys, records, error = (
                keys[:disorder],
                records[:disorder],
                invalid_argument(f"{name} line {lines[disorder]} is out of order"),
            )
        if records:
            yield keys, records
            previous = keys[-1]
        if error is not None:
            raise error


def _pairs(window1: Window[_Row], window2: Window[_Row]) -> list[tuple[_Row, _Row]]:
    """The pairs of records with equal keys, in order (the i-th of a run with the i-th)."""
    (keys1, records1), (keys2, records2) = window1, window2
    unique = dict(zip(keys2, records2, strict=True))
    if len(unique) == len(keys2) and len(set(keys1)) == len(keys1):
        return [
            (record, unique[key])
            for key, record in zip(keys1, records1, strict=True)
            if key in unique
        ]
    runs: dict[str, deque[_Row]] = {}
    for key, record in zip(keys2, records2, strict=True):
        runs.setdefault(key, deque()).append(record)
    pairs = []
    for key, record in zip(keys1, records1, strict=True):
        run = runs.get(key)
        if run:
            pairs.append((record, run.popleft()))
    return pairs


def ordered_set_join(arguments: OrderedSetJoinArguments, runtime: Runtime) -> str:
    """Write the joined rows to ``output_result``; returns "<n> records"."""
    left, right, ascending = arguments.left_column, arguments.right_column, arguments.ascending
    cursor1 = Cursor(_blocks(runtime.open_input(INPUT1), INPUT1, left, ascending))
    cursor2 = Cursor(_blocks(runtime.open_input(INPUT2), INPUT2, right, ascending))
    with io.TextIOWrapper(runtime.create_output(OUTPUT), encoding="utf-8", newline="") as text:
        writer = csv.writer(text, lineterminator="\n")
        if not cursor1.fill():
            raise invalid_argument("input1 is empty")
        if not cursor2.fill():
            raise invalid_argument("input2 is empty")
        count = 0

        def match(window1: Window[_Row], window2: Window[_Row]) -> None:
            nonlocal count
            pairs = _pairs(window1, window2)
            if arguments.drop:
                rows = [
                    r1[:left] + r1[left + 1 :] + r2[:right] + r2[right + 1 :] for r1, r2 in pairs
                ]
            else:
                rows = [r1 + r2[:right] + r2[right + 1 :] for r1, r2 in pairs]
            writer.writerows(rows)
            count += len(rows)

        merge(cursor1, cursor2, ascending, match)
    return f"{count} records"


BUILTIN = Builtin(
    "builtin-ordered-set-join",
    OrderedSetJoinArguments,
    ordered_set_join,
    inputs=(INPUT1, INPUT2),
    outputs=(OUTPUT,),
)
