"""Iterating with a context around each step (e.g. a variable set only while a
generator runs, not while its consumer works between two of its items)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TypeVar

T = TypeVar("T")


def stepped(
    items: Callable[[], Iterable[T]], around: Callable[[], AbstractContextManager[object]]
) -> Iterator[T]:
    """The items of ``items()``: the call and each step of its iterator inside a fresh
    ``around()``."""
    with around():
        iterator = iter(items())
    while True:
        with around():
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item
