"""Compiled Wasm modules, kept in the execution service's memory and keyed by payload hash.

The service compiles a Wasm task's payload once and hands the compiled module
to each task process through its stdin: a compiled module is native code, so
the platform only ever loads one it produced itself in this process (never one
read from disk, where it could have been replaced).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from teaclave.executor import wasm


class ModuleCache:
    """Least-recently-used compiled modules, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._modules: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._modules)

    def compiled(self, payload: bytes, abi: str) -> bytes:
        """``payload`` compiled for ``abi`` (INVALID_ARGUMENT if it is not a valid function)."""
        key = f"{abi}:{hashlib.sha256(payload).hexdigest()}"
        with self._lock:
            module = self._modules.get(key)
            if module is not None:
                self._modules.move_to_end(key)
                return module
        module = wasm.compile_module(payload, abi)
        with self._lock:
            if key not in self._modules and len(module) <= self._max_bytes:
                self._modules[key] = module
                self._size += len(module)
                while self._size > self._max_bytes:
                    _, evicted = self._modules.popitem(last=False)
                    self._size -= len(evicted)
        return module
