"""``builtin-ordered-set-intersect`` (reference §7.7): private set intersection of sorted lists.

Each input holds one hex string per line, sorted by the decoded bytes in the
requested order ("ascending" or, as spelled upstream, "desending"). A merge
walk marks every line found in the other list; both inputs are read line by
line and both outputs written as the walk goes (linear time, constant extra memory).
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from teaclave.core.errors import invalid_argument
from teaclave.functions.builtin import Builtin
from teaclave.functions.runtime import Runtime

INPUT1, INPUT2 = "input_data1", "input_data2"
OUTPUT1, OUTPUT2 = "output_result1", "output_result2"


@dataclass(frozen=True)
class OrderedSetIntersectArguments:
    """``order``: "ascending" or "desending"."""

    order: str


def _items(stream: BinaryIO, name: str, ascending: bool) -> Iterator[bytes]:
    """The decoded lines of ``stream``, checked to be monotonic in the given order."""
    previous: bytes | None = None
    for number, line in enumerate(stream, start=1):
        text = line[:-1].removesuffix(b"\r") if line.endswith(b"\n") else line
        try:
            item = binascii.unhexlify(text)
        except binascii.Error:
            raise invalid_argument(f"{name} line {number} is not a hex string") from None
        if previous is not None and (item < previous if ascending else item > previous):
            raise invalid_argument("Invalid ordering")
        previous = item
        yield item


def ordered_set_intersect(arguments: OrderedSetIntersectArguments, runtime: Runtime) -> str:
    """Write a 0/1 membership mark per line of each input; returns "<k> common items"."""
    if arguments.order not in ("ascending", "desending"):
        raise invalid_argument("Invalid order")
    ascending = arguments.order == "ascending"
    items1 = _items(runtime.open_input(INPUT1), INPUT1, ascending)
    items2 = _items(runtime.open_input(INPUT2), INPUT2, ascending)
    output1, output2 = runtime.create_output(OUTPUT1), runtime.create_output(OUTPUT2)
    common = 0
    item1, item2 = next(items1, None), next(items2, None)
    while item1 is not None and item2 is not None:
        if item1 == item2:
            output1.write(b"1")
            output2.write(b"1")
            common += 1
            item1, item2 = next(items1, None), next(items2, None)
        elif (item1 < item2) == ascending:
            output1.write(b"0")
            item1 = next(items1, None)
        else:
            output2.write(b"0")
            item2 = next(items2, None)
    # What is left of either list has no match (its ordering is still checked).
    for item, rest, output in ((item1, items1, output1), (item2, items2, output2)):
        if item is not None:
            output.write(b"0")
        for _ in rest:
            output.write(b"0")
    return f"{common} common items"


BUILTIN = Builtin(
    "builtin-ordered-set-intersect",
    OrderedSetIntersectArguments,
    ordered_set_intersect,
    inputs=(INPUT1, INPUT2),
    outputs=(OUTPUT1, OUTPUT2),
)
