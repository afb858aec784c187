"""The numeric CSV reader and float text shared by the numerical built-ins."""

import io

import numpy as np
import pytest

from teaclave.core.errors import Status, TeaclaveError
from teaclave.functions.numeric_csv import parse_f32, parse_f64, read_rows, rust_debug


def rows(data: bytes, columns: int = 2) -> list[list[float]]:
    result: list[list[float]] = read_rows(io.BytesIO(data), "data", columns).tolist()
    return result


def test_rows_are_trimmed_and_crlf_is_accepted() -> None:
    assert rows(b" 1, -2.5 \r\n3e2,.5\n+4,5.") == [[1.0, -2.5], [300.0, 0.5], [4.0, 5.0]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "data is empty"),
        (b"1,2\n\n3,4\n", "data line 2 is empty"),
        (b"1,2\n3\n", "data line 2 has 1 columns, expected 2"),
        (b"1,2,3\n", "data line 1 has 3 columns, expected 2"),
        (b"1,x\n", "data line 1 column 2: 'x' is not a number"),
        (b"1,\n", "data line 1 column 2: '' is not a number"),
        (b"1_0,2\n", "data line 1 column 1: '1_0' is not a number"),
        (b"NaN,2\n", "data line 1 column 1: 'NaN' is not a number"),
        (b"1,1e999\n", "data line 1 column 2: '1e999' is not finite"),
        (b"1,2\n\xff,2\n", "data line 2 is not UTF-8 text"),
        (b"1," + b"7" * 40 + b"x\n", "data line 1 column 2: '777777777777777777777...' is not"),
    ],
)
def test_malformed_tables(data: bytes, message: str) -> None:
    with pytest.raises(TeaclaveError, match=f"^{message}") as info:
        rows(data)
    assert info.value.status is Status.INVALID_ARGUMENT


def test_parse_f32_rounds_once() -> None:
    # 1 + 2^-24 lies half-way between the singles 1 and 1 + 2^-23.
    assert parse_f32("1.000000059604644775390625") == 1.0  # the tie: to even
    assert parse_f32("1.0000000596046447753906250001") == 1 + 2**-23
    assert parse_f32("1.0000000596046447753906249999") == 1.0
    # Rounding to double first would make the last two ties (both go to 1.0).
    assert np.float32(parse_f64("1.0000000596046447753906250001")) == 1.0
    assert parse_f32("1.6500001") == float(np.float32(1.6500001))
    assert parse_f32("-2.45") == float(np.float32(-2.45))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (-2.4154563605850874, "-2.4154563605850874"),
        (0.0001, "0.0001"),
        (9.9e-5, "9.9e-5"),
        (-2.5e-7, "-2.5e-7"),
        (9999999999999998.0, "9999999999999998.0"),
        (1e16, "1e16"),
        (1.5e300, "1.5e300"),
    ],
)
def test_rust_debug(value: float, text: str) -> None:
    assert rust_debug(value) == text
