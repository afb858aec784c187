"""Argument types the numerical built-ins added: optional keys, u32/u8, byte arrays."""

from dataclasses import dataclass

import pytest

from teaclave.core.errors import TeaclaveError
from teaclave.functions.builtin import U8, U32, Builtin


@dataclass(frozen=True)
class Options:
    data: bytes
    level: U8
    size: U32 | None = None
    ratio: float = 0.5


OPTIONS = Builtin("options", Options, lambda arguments, runtime: repr(arguments))


def test_optional_keys_take_their_defaults_or_null() -> None:
    assert OPTIONS.parse_arguments('{"data": [0, 255], "level": 2}') == Options(b"\x00\xff", 2)
    parsed = OPTIONS.parse_arguments('{"data": [], "level": 255, "size": null, "ratio": 1}')
    assert parsed == Options(b"", 255, None, 1.0)
    assert OPTIONS.parse_arguments('{"data": [], "level": 0, "size": 4294967295}').size == 2**32 - 1


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ('{"level": 1}', "missing key 'data'"),
        ('{"data": [256], "level": 1}', "'data' must be an array of integers from 0 to 255"),
        ('{"data": [-1], "level": 1}', "'data' must be an array of integers from 0 to 255"),
        ('{"data": [true], "level": 1}', "'data' must be an array of integers from 0 to 255"),
        ('{"data": "AAE=", "level": 1}', "'data' must be an array of integers from 0 to 255"),
        ('{"data": [], "level": 256}', "'level' must be an integer from 0 to 255"),
        ('{"data": [], "level": 1, "size": 4294967296}', "'size' must be an integer from 0 to"),
        ('{"data": [], "level": 1, "size": 1.0}', "'size' must be an integer from 0 to"),
        ('{"data": [], "level": 1, "ratio": null}', "'ratio' must be a number"),
        ('{"data": [], "level": 1, "ratio": NaN}', "'ratio' must be a number"),
        ('{"data": [], "level": 1, "ratio": Infinity}', "'ratio' must be a number"),
        ('{"data": [], "level": 1, "ratio": 1' + "0" * 400 + "}", "'ratio' must be a number"),
    ],
)
def test_ill_typed_arguments(arguments: str, reason: str) -> None:
    with pytest.raises(TeaclaveError, match=f"^Cannot deserialize arguments: {reason}"):
        OPTIONS.parse_arguments(arguments)
