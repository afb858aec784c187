"""Numeric CSV as Teaclave's machine-learning built-ins read it, and Rust's float text.

A table is UTF-8 text, one row per line (``\\n`` or ``\\r\\n``), values separated by
commas. Each line and each value is trimmed; every value must be a finite decimal
number (Rust's float grammar: ``[+-]digits[.digits][e[+-]digits]``). Errors name the
input, the line and the column, as Teaclave's did not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import BinaryIO

import numpy as np

from teaclave.core.errors import invalid_argument

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_f64(text: str) -> float:
    """``text`` rounded to the nearest double (Rust's ``str::parse::<f64>``); ValueError if
    it is not a number."""
    if not _NUMBER.fullmatch(text):
        raise ValueError(text)
    return float(text)


def parse_f32(text: str) -> float:
    """``text`` rounded once to the nearest single-precision value (``parse::<f32>``).

    Rounding to double first and then to single can differ from rounding once when
    the double lands exactly half-way between two singles; the exact decimal decides.
    """
    wide = parse_f64(text)
    with np.errstate(over="ignore"):
        narrow = np.float32(wide)
    if float(narrow) != wide and np.isfinite(narrow):
        other = np.nextafter(narrow, np.float32(np.inf if float(narrow) < wide else -np.inf))
        if (float(narrow) + float(other)) / 2 == wide:  # a tie only for the double
            exact = Decimal(text)
            if exact != Decimal(wide) and (exact > Decimal(wide)) == (other > narrow):
                narrow = other
    return float(narrow)


def read_rows(
    stream: BinaryIO, name: str, columns: int, parse: Callable[[str], float] = parse_f64
) -> np.ndarray:
    """Every row of input ``name`` as a float64 array of shape (rows, ``columns``).

    ``parse`` converts one value (:func:`parse_f64` or :func:`parse_f32`). An input
    without rows, a blank line, a row of another width, a value that is not a number
    or not finite are errors.
    """
    rows: list[list[float]] = []
    with stream:
        for number, raw in enumerate(stream, start=1):
            rows.append(_row(raw, f"{name} line {number}", columns, parse))
    if not rows:
        raise invalid_argument(f"{name} is empty")
    return np.array(rows, dtype=np.float64)


def _shown(text: str) -> str:
    """``text`` quoted, cut short if long."""
    return repr(text if len(text) <= 24 else text[:21] + "...")


def _row(raw: bytes, where: str, columns: int, parse: Callable[[str], float]) -> list[float]:
    """The values of one line (``where`` names it in errors)."""
    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise invalid_argument(f"{where} is not UTF-8 text") from None
    if not line:
        raise invalid_argument(f"{where} is empty")
    fields = line.split(",")
    if len(fields) != columns:
        raise invalid_argument(f"{where} has {len(fields)} columns, expected {columns}")
    row = []
    for column, field in enumerate(fields, start=1):
        text = field.strip()
        try:
            value = parse(text)
        except ValueError:
            problem = f"{where} column {column}: {_shown(text)} is not a number"
            raise invalid_argument(problem) from None
        if not math.isfinite(value):
            raise invalid_argument(f"{where} column {column}: {_shown(text)} is not finite")
        row.append(value)
    return row


def rust_debug(value: float) -> str:
    """A finite double as Rust's ``{:?}`` prints it: the shortest text that reads back
    as ``value``, in exponent form below 1e-4 and from 1e16 (``1e16``, ``2.5e-7``)."""
    # Python's repr has the same digits and switches form at the same magnitudes;
    # only the exponent is spelled differently ("1e+16", "2.5e-07").
    text = repr(value)
    mantissa, exponent_mark, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent_mark else text
