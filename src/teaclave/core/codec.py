"""JSON encoding of the core dataclasses, for storage at rest.

A small, strict codec driven by type hints: ``bytes`` become base64 strings,
sets become sorted lists, enums their values, nested dataclasses objects.
Decoding checks every field; any mismatch is a :class:`CodecError`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import json
import types
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class CodecError(ValueError):
    """Stored data does not match the expected shape."""


def encode(obj: Any) -> bytes:
    """Encode a dataclass instance as compact, key-sorted JSON bytes."""
    return json.dumps(_to_plain(obj), sort_keys=True, separators=(",", ":")).encode()


def decode(cls: type[T], data: bytes) -> T:
    """Decode JSON bytes produced by :func:`encode` into ``cls``."""
    try:
        plain = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    value: T = _from_plain(cls, plain, cls.__name__)
    return value


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    if isinstance(obj, frozenset | set):
        return sorted(_to_plain(v) for v in obj)
    if isinstance(obj, list | tuple):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    return obj


@functools.cache
def _fields(cls: Any) -> tuple[tuple[str, Any, bool], ...]:
    """Each field of the dataclass ``cls``: its name, type, and whether it has a default
    (resolving the type hints is slow: once per class)."""
    hints = get_type_hints(cls)
    return tuple(
        (
            f.name,
            hints[f.name],
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )


def resolve(tp: Any, seen: set[Any] | None = None) -> None:
    """Resolve the field types of the dataclasses in ``tp`` now, not at their first decode
    (e.g. in a process that forks many that decode them)."""
    seen = set() if seen is None else seen
    if tp in seen:
        return
    seen.add(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        for _, hint, _ in _fields(tp):
            resolve(hint, seen)
    for arg in get_args(tp):
        resolve(arg, seen)


def _from_plain(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _from_plain(option, value, where)
            except CodecError:
                continue
        raise CodecError(f"{where}: no union member matches")
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise CodecError(f"{where}: expected object")
        kwargs = {}
        for name, hint, optional in _fields(tp):
            if name not in value:
                if optional:
                    continue
                raise CodecError(f"{where}.{name}: missing")
            kwargs[name] = _from_plain(hint, value[name], f"{where}.{name}")
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError as exc:
            raise CodecError(f"{where}: {exc}") from exc
    if tp is bytes:
        if not isinstance(value, str):
            raise CodecError(f"{where}: expected base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise CodecError(f"{where}: bad base64") from exc
    if origin in (frozenset, set, list, tuple):
        if not isinstance(value, list):
            raise CodecError(f"{where}: expected array")
        args = get_args(tp)
        item = args[0] if args else Any
        items = [_from_plain(item, v, f"{where}[]") for v in value]
        return origin(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise CodecError(f"{where}: expected object")
        _, vtype = get_args(tp)
        return {k: _from_plain(vtype, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if (
        isinstance(tp, type)
        and isinstance(value, tp)
        and not (tp is int and isinstance(value, bool))
    ):
        return value
    raise CodecError(f"{where}: expected {getattr(tp, '__name__', tp)}")


__all__ = ["CodecError", "decode", "encode"]
