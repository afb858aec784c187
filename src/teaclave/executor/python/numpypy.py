"""MesaPy's ``_numpypy`` and ``marshal``, for the MesaPy profile, on top of numpy.

MesaPy payloads use PyPy's micronumpy as ``_numpypy`` (``multiarray.array``,
``zeros``, ``frombuffer``, …; ``umath.exp``, ``log``, …) and save numpy arrays
with ``marshal``, which wrote an array (or a numpy scalar) as its raw buffer, read
back with ``frombuffer``. Python's ``marshal`` does so for contiguous ones; this one
also writes any other array (its bytes in C order) and reads a MesaPy byte string.
Arrays made here print as micronumpy's did: ``str`` is every element, flattened, in
brackets (``[1.0 1.0 0.0]``).

Imported before the sandbox is forked, and only if numpy is an allowed module.
"""

from __future__ import annotations

import functools
import marshal as _marshal
import types
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from teaclave.executor.python.mesapy import raw


class ndarray(np.ndarray[Any, Any]):  # noqa: N801 (micronumpy's name)
    """A numpy array that prints as micronumpy's did."""

    def __str__(self) -> str:
        if self.ndim == 0:
            return repr(self.item())
        return "[" + " ".join(repr(value) for value in self.ravel().tolist()) + "]"


def _micro(make: Callable[..., Any]) -> Callable[..., Any]:
    """numpy's ``make``, its arrays printing as micronumpy's did."""

    @functools.wraps(make)
    def made(*args: Any, **kwargs: Any) -> Any:
        result = make(*args, **kwargs)
        return result.view(ndarray) if isinstance(result, np.ndarray) else result

    return made


def _frombuffer(buffer: Any, *args: Any, **kwargs: Any) -> Any:
    """``frombuffer`` of a buffer or of a MesaPy byte string (float64 by default)."""
    return np.frombuffer(raw(buffer), *args, **kwargs)


def _module(name: str, doc: str, **members: Any) -> types.ModuleType:
    module = types.ModuleType(name, doc)
    vars(module).update(members)
    return module


def _plain(value: Any) -> Any:
    """``value`` with every numpy array and scalar in it replaced by its raw buffer."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tobytes()
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_plain(item) for item in value)
    return value


def dumps(value: Any, version: int = _marshal.version) -> bytes:
    """``marshal.dumps``, numpy arrays and scalars written as their raw buffers."""
    return _marshal.dumps(_plain(value), version)


def loads(data: Any) -> Any:
    """``marshal.loads`` (of bytes, or of a str read from a MesaPy file)."""
    return _marshal.loads(raw(data))  # noqa: S302 (the function's own data, in its sandbox)


def dump(value: Any, file: BinaryIO, version: int = _marshal.version) -> None:
    """``marshal.dump``: :func:`dumps` written to ``file``."""
    file.write(dumps(value, version))


def load(file: BinaryIO) -> Any:
    """``marshal.load``: :func:`loads` of the rest of ``file``."""
    return loads(file.read())


def modules() -> dict[str, types.ModuleType]:
    """New ``_numpypy`` (with ``multiarray`` and ``umath``) and ``marshal`` modules, by name."""
    makers: dict[str, Callable[..., Any]] = {
        "array": np.array,
        "zeros": np.zeros,
        "ones": np.ones,
        "empty": np.empty,
    }
    multiarray = _module(
        "_numpypy.multiarray",
        "micronumpy's multiarray on numpy.",
        ndarray=ndarray,
        dtype=np.dtype,
        frombuffer=_micro(_frombuffer),
        dot=_micro(np.dot),
        **{name: _micro(make) for name, make in makers.items()},
    )
    ufuncs = {name: value for name, value in vars(np).items() if isinstance(value, np.ufunc)}
    umath = _module("_numpypy.umath", "numpy's ufuncs.", **ufuncs)
    numpypy = _module(
        "_numpypy", "MesaPy's micronumpy, on numpy.", multiarray=multiarray, umath=umath
    )
    marshal = _module(
        "marshal",
        "marshal, numpy arrays written as their raw buffers.",
        dumps=dumps,
        loads=loads,
        dump=dump,
        load=load,
        version=_marshal.version,
    )
    return {
        "_numpypy": numpypy,
        "_numpypy.multiarray": multiarray,
        "_numpypy.umath": umath,
        "marshal": marshal,
    }
