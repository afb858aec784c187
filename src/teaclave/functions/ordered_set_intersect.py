"""``builtin-ordered-set-intersect`` (reference §7.7): private set intersection of sorted lists.

Each input holds one hex string per line, sorted by the decoded bytes in the
requested order ("ascending" or, as spelled upstream, "desending"). A merge
walk marks every line found in the other list. Lines are compared as
lowercase text: for even-length hex that orders and matches exactly as the
decoded bytes do. Inputs are read and outputs written a block at a time
(:mod:`teaclave.functions.merge`); every line is checked, even after the
other list ended, and a bad line fails the task when the walk reaches it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from teaclave.core.errors import TeaclaveError, invalid_argument
from teaclave.functions.builtin import Builtin
from teaclave.functions.merge import Cursor, Window, first_disorder, merge
from teaclave.functions.runtime import Runtime
from teaclave.functions.streams import line_blocks

INPUT1, INPUT2 = "input_data1", "input_data2"
OUTPUT1, OUTPUT2 = "output_result1", "output_result2"

_HEX_DIGITS = b"0123456789abcdef"
_HEX_LINES = _HEX_DIGITS + b"\n"
_MARKS = bytes.maketrans(b"\x00\x01", b"01")


@dataclass(frozen=True)
class OrderedSetIntersectArguments:
    """``order``: "ascending" or "desending"."""

    order: str


def _bad_line(text: bytes, lines: list[bytes]) -> int | None:
    """The index of the first line that is not an even-length hex string (``text``: all lines)."""
    if not text.translate(None, _HEX_LINES) and not any(
        length & 1 for length in set(map(len, lines))
    ):
        return None
    return next(
        index
        for index, line in enumerate(lines)
        if len(line) & 1 or line.translate(None, _HEX_DIGITS)
    )


def _blocks(stream: BinaryIO, name: str, ascending: bool) -> Iterator[Window[bytes]]:
    """Blocks of the lowercased lines of ``stream``; the first bad line raises when reached."""
    previous: bytes | None = None
    lines_before = 0
    for block in line_blocks(stream):
        text = (block.replace(b"\r\n", b"\n") if b"\r" in block else block).lower()
        lines = text.split(b"\n")
        if text.endswith(b"\n"):
            lines.pop()
        error: TeaclaveError | None = None
        bad = _bad_line(text, lines)
        if bad is not None:
            lines, error = (
                lines[:bad],
                invalid_argument(f"{name} line {lines_before + bad + 1} is not a hex string"),
            )
        disorder = first_disorder(lines, previous, ascending)
        if disorder is not None:
            lines, error = lines[:disorder], invalid_argument("Invalid ordering")
        if lines:
            yield lines, lines
            previous = lines[-1]
        if error is not None:
            raise error
        lines_before += len(lines)


def _first_matches(items: list[bytes], other: list[bytes]) -> bytes:
    """A mark per item: 1 for the first n of a run of equal items if ``other`` has n of them."""
    left = Counter(other)
    marks = bytearray()
    for item in items:
        found = left[item] > 0
        left[item] -= found
        marks.append(48 + found)
    return bytes(marks)


def ordered_set_intersect(arguments: OrderedSetIntersectArguments, runtime: Runtime) -> str:
    """Write a 0/1 membership mark per line of each input; returns "<k> common items"."""
    if arguments.order not in ("ascending", "desending"):
        raise invalid_argument("Invalid order")
    ascending = arguments.order == "ascending"
    cursor1 = Cursor(_blocks(runtime.open_input(INPUT1), INPUT1, ascending))
    cursor2 = Cursor(_blocks(runtime.open_input(INPUT2), INPUT2, ascending))
    output1, output2 = runtime.create_output(OUTPUT1), runtime.create_output(OUTPUT2)
    common = 0

    def match(window1: Window[bytes], window2: Window[bytes]) -> None:
        nonlocal common
        items1, items2 = window1[0], window2[0]
        set1, set2 = set(items1), set(items2)
        if len(set1) == len(items1) and len(set2) == len(items2):
            marks1 = bytes(map(set2.__contains__, items1)).translate(_MARKS)
            marks2 = bytes(map(set1.__contains__, items2)).translate(_MARKS)
        else:
            marks1, marks2 = _first_matches(items1, items2), _first_matches(items2, items1)
        output1.write(marks1)
        output2.write(marks2)
        common += marks1.count(b"1")

    merge(cursor1, cursor2, ascending, match)
    # What is left of either list has no match (its ordering is still checked).
    for cursor, output in ((cursor1, output1), (cursor2, output2)):
        for items in cursor.rest():
            output.write(b"0" * len(items))
    return f"{common} common items"


BUILTIN = Builtin(
    "builtin-ordered-set-intersect",
    OrderedSetIntersectArguments,
    ordered_set_intersect,
    inputs=(INPUT1, INPUT2),
    outputs=(OUTPUT1, OUTPUT2),
)
