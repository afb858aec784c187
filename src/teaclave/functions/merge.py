"""Merge walks over sorted inputs, a block of records at a time (the ordered-set built-ins).

A walk compares the heads of two sorted inputs and advances the smaller one
(both when equal). :func:`merge` gives the same result window by window: every
record strictly before the smaller of the two blocks' last keys can only meet
records of the same window, so a window is matched with sets or dicts instead
of one comparison per step. Equal keys pair up in order (the i-th of a run in
one input with the i-th of the run in the other), as in the step-by-step walk.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Callable, Iterator
from itertools import compress, count, islice
from typing import Any, Generic, TypeVar

V = TypeVar("V")

Window = tuple[list[Any], list[V]]
"""Keys and records of consecutive records of one input."""


def first_disorder(keys: list[Any], previous: Any, ascending: bool) -> int | None:
    """The index of the first key out of order (``previous``: the key before, or None)."""
    chain = keys if previous is None else [previous, *keys]
    if sorted(chain, reverse=not ascending) == chain:  # linear on sorted data
        return None
    ordered = operator.le if ascending else operator.ge
    flags = map(operator.not_, map(ordered, chain, islice(chain, 1, None)))
    pair = next(compress(count(), flags))
    return pair if previous is not None else pair + 1


def _cut(keys: list[Any], start: int, bound: Any, ascending: bool) -> int:
    """The first index from ``start`` on whose key is not strictly before ``bound``."""
    if ascending:
        return bisect.bisect_left(keys, bound, start)
    low, high = start, len(keys)
    while low < high:
        middle = (low + high) // 2
        if keys[middle] > bound:
            low = middle + 1
        else:
            high = middle
    return low


class Cursor(Generic[V]):
    """The unread part of a sorted input given as blocks (keys, records)."""

    def __init__(self, blocks: Iterator[Window[V]]) -> None:
        self._blocks = blocks
        self.keys: list[Any] = []
        self._records: list[V] = []
        self.start = 0

    def fill(self) -> bool:
        """Make sure a record is unread (reading the next block if needed); False at the end."""
        while self.start == len(self.keys):
            block = next(self._blocks, None)
            if block is None:
                return False
            (self.keys, self._records), self.start = block, 0
        return True

    def take(self, end: int) -> Window[V]:
        """The unread records up to ``end``, now read."""
        start, self.start = self.start, end
        return self.keys[start:end], self._records[start:end]

    def rest(self) -> Iterator[list[V]]:
        """The records never read, a block at a time."""
        yield self.take(len(self.keys))[1]
        for _, records in self._blocks:
            yield records


def merge(
    cursor1: Cursor[V],
    cursor2: Cursor[V],
    ascending: bool,
    match: Callable[[Window[V], Window[V]], None],
) -> None:
    """Walk both inputs until either ends, handing ``match`` windows that only meet each other."""
    while cursor1.fill() and cursor2.fill():
        keys1, keys2, start1, start2 = cursor1.keys, cursor2.keys, cursor1.start, cursor2.start
        bound = min(keys1[-1], keys2[-1]) if ascending else max(keys1[-1], keys2[-1])
        end1, end2 = _cut(keys1, start1, bound, ascending), _cut(keys2, start2, bound, ascending)
        if (end1, end2) == (start1, start2):  # both heads are at the bound: one step
            head1, head2 = keys1[start1], keys2[start2]
            end1 = start1 + (head1 == head2 or (head1 < head2) == ascending)
            end2 = start2 + (head1 == head2 or (head2 < head1) == ascending)
        match(cursor1.take(end1), cursor2.take(end2))
