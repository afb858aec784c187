"""``builtin-private-aggregate``: join parties' tables on a key, release only large groups.

Every input ``input_data0`` … ``input_data<parties-1>`` is UTF-8 CSV whose
first row names its columns. The tables are inner-joined on the column
``key`` (present in every table; a key may appear only once per table). The
joined rows are grouped by the column ``group_by`` and each group gets the
requested ``aggregates``; a group of fewer than ``k`` joined rows is left out
entirely (k-anonymity-style suppression). Output ``output_result``: CSV with a
header, one row per released group, sorted by group value. Columns other than
``key`` are named without their table and must be unambiguous. Error messages
name tables, lines and columns, never values.

``aggregates`` is a comma-separated list of ``count``, ``sum:<column>``,
``mean:<column>``, ``min:<column>`` and ``max:<column>``; their columns must be
decimal numbers. Sums, minima and maxima are exact decimals; means are rounded
half-even to :data:`MEAN_DECIMALS` places. Memory holds the needed columns of
every table but the first, which is streamed (only its keys are kept).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from typing import BinaryIO

from teaclave.core.errors import invalid_argument
from teaclave.functions.builtin import Builtin, Usize
from teaclave.functions.runtime import Runtime
from teaclave.functions.streams import decoded_blocks, text_lines

INPUT, OUTPUT = "input_data", "output_result"
MEAN_DECIMALS = 6
FUNCTIONS = ("count", "sum", "mean", "min", "max")
_PRECISION = 100
"""Decimal digits kept by sums (far beyond any realistic column)."""

_Part = tuple[str, int, list[str]]
"""A table's share of a joined row: table name, line, texts of its needed columns."""


@dataclass(frozen=True)
class PrivateAggregateArguments:
    """Parties (≥ 2), join and group columns, aggregates, and the smallest released group (≥ 2)."""

    parties: Usize
    key: str
    group_by: str
    aggregates: str
    k: Usize


def input_names(arguments: PrivateAggregateArguments) -> tuple[str, ...]:
    """``input_data0`` … for each party."""
    return tuple(f"{INPUT}{i}" for i in range(arguments.parties))


@dataclass(frozen=True)
class _Aggregate:
    function: str
    column: str  # "" for count

    @property
    def title(self) -> str:
        return self.function if self.function == "count" else f"{self.function}({self.column})"


def _aggregates(text: str) -> list[_Aggregate]:
    """The parsed ``aggregates`` argument."""
    aggregates = []
    for item in text.split(","):
        function, _, column = item.strip().partition(":")
        if function not in FUNCTIONS:
            raise invalid_argument(
                f"unknown aggregate {item.strip()!r}: use {', '.join(FUNCTIONS)} (as name:column)"
            )
        if (function == "count") != (not column):
            form = "count" if function == "count" else f"{function}:<column>"
            raise invalid_argument(f"aggregate {item.strip()!r} must be written {form}")
        aggregates.append(_Aggregate(function, column.strip()))
    if len(set(aggregates)) != len(aggregates):
        raise invalid_argument("aggregates are repeated")
    return aggregates


@dataclass
class _Table:
    """One party's CSV: its header and an iterator over (line number, record)."""

    name: str
    header: list[str]
    records: Iterator[tuple[int, list[str]]]


def _table(stream: BinaryIO, name: str) -> _Table:
    reader = csv.reader(text_lines(decoded_blocks(stream, name)), strict=True)

    def records() -> Iterator[tuple[int, list[str]]]:
        try:
            for record in reader:
                if record:  # not a blank line
                    yield reader.line_num, record
        except csv.Error as exc:
            raise invalid_argument(
                f"{name} line {reader.line_num} is not valid CSV: {exc}"
            ) from None

    rows = records()
    first = next(rows, None)
    if first is None:
        raise invalid_argument(f"{name} is empty (no header row)")
    header = first[1]
    if len(set(header)) != len(header):
        raise invalid_argument(f"{name} repeats a column name in its header")
    return _Table(name, header, rows)


def _fields(table: _Table) -> Iterator[tuple[int, list[str]]]:
    """The table's records, checked to have as many fields as its header."""
    for line, record in table.records:
        if len(record) != len(table.header):
            raise invalid_argument(
                f"{table.name} line {line} has {len(record)} fields, its header {len(table.header)}"
            )
        yield line, record


def _unique_keys(table: _Table, key: str) -> Iterator[tuple[int, list[str]]]:
    """:func:`_fields` of ``table``, checked to hold each key once."""
    position, lines = table.header.index(key), dict[str, int]()
    for line, record in _fields(table):
        earlier = lines.setdefault(record[position], line)
        if earlier != line:
            raise invalid_argument(f"{table.name} line {line} repeats the key of line {earlier}")
        yield line, record


def _number(text: str, table: str, line: int, column: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise invalid_argument(f"{table} line {line} column {column!r} is not a decimal number")
    return value


@dataclass
class _Group:
    count: int = 0
    sums: dict[str, Decimal] = field(default_factory=dict)
    minima: dict[str, Decimal] = field(default_factory=dict)
    maxima: dict[str, Decimal] = field(default_factory=dict)

    def add(self, values: dict[str, Decimal]) -> None:
        self.count += 1
        for column, value in values.items():
            self.sums[column] = self.sums.get(column, Decimal(0)) + value
            self.minima[column] = min(self.minima.get(column, value), value)
            self.maxima[column] = max(self.maxima.get(column, value), value)

    def result(self, aggregate: _Aggregate) -> str:
        column = aggregate.column
        if aggregate.function == "count":
            return str(self.count)
        if aggregate.function == "mean":
            mean = self.sums[column] / self.count
            return f"{mean.quantize(Decimal(1).scaleb(-MEAN_DECIMALS)):f}"
        values = {"sum": self.sums, "min": self.minima, "max": self.maxima}[aggregate.function]
        return f"{values[column]:f}"


def _locate(tables: list[_Table], columns: list[str]) -> dict[str, int]:
    """The table holding each column (the key is everywhere: table 0)."""
    owners: dict[str, int] = {}
    for column in columns:
        holders = [i for i, table in enumerate(tables) if column in table.header]
        if not holders:
            listed = "; ".join(f"{t.name} ({', '.join(t.header)})" for t in tables)
            raise invalid_argument(f"unknown column {column!r}: no table has it ({listed})")
        if len(holders) > 1:
            names = ", ".join(tables[i].name for i in holders)
            raise invalid_argument(f"column {column!r} is ambiguous: {names} all have it")
        owners[column] = holders[0]
    return owners


def private_aggregate(arguments: PrivateAggregateArguments, runtime: Runtime) -> str:
    """Write the released groups' aggregates; returns "<g> groups released"."""
    if arguments.parties < 2:
        raise invalid_argument("parties must be at least 2")
    if arguments.k < 2:
        raise invalid_argument("k must be at least 2")
    aggregates = _aggregates(arguments.aggregates)
    key = arguments.key
    tables = [_table(runtime.open_input(name), name) for name in input_names(arguments)]
    for table in tables:
        if key not in table.header:
            raise invalid_argument(f"{table.name} has no key column {key!r}")
    numeric = sorted({a.column for a in aggregates if a.column})
    owners = _locate(tables, [c for c in {arguments.group_by, *numeric} if c != key])
    owners[key] = 0
    needed = sorted({arguments.group_by, *numeric})
    columns = [[c for c in needed if owners[c] == i] for i in range(len(tables))]
    positions = [[t.header.index(c) for c in cs] for t, cs in zip(tables, columns, strict=True)]

    # Every table but the first, held as key → (line, the texts of its needed columns).
    indexed: list[dict[str, _Part]] = []
    for table, places in zip(tables[1:], positions[1:], strict=True):
        rows: dict[str, _Part] = {}
        for line, record in _unique_keys(table, key):
            rows[record[table.header.index(key)]] = (table.name, line, [record[p] for p in places])
        indexed.append(rows)

    first = tables[0]
    groups: dict[str, _Group] = {}
    with localcontext(prec=_PRECISION):
        for line, record in _unique_keys(first, key):
            parts = [(first.name, line, [record[p] for p in positions[0]])]
            for rows in indexed:
                part = rows.get(record[first.header.index(key)])
                if part is None:
                    break
                parts.append(part)
            else:
                cells = {
                    column: (text, table, number)
                    for (table, number, texts), names in zip(parts, columns, strict=True)
                    for column, text in zip(names, texts, strict=True)
                }
                values = {c: _number(*cells[c], c) for c in numeric}
                groups.setdefault(cells[arguments.group_by][0], _Group()).add(values)
        released = {g: group for g, group in groups.items() if group.count >= arguments.k}
        with io.TextIOWrapper(runtime.create_output(OUTPUT), encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow([arguments.group_by, *(a.title for a in aggregates)])
            for value in sorted(released):
                writer.writerow([value, *(released[value].result(a) for a in aggregates)])
    return f"{len(released)} groups released"


BUILTIN = Builtin(
    "builtin-private-aggregate",
    PrivateAggregateArguments,
    private_aggregate,
    inputs=input_names,
    outputs=(OUTPUT,),
)
