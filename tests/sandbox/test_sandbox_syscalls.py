"""The hand-written syscall table against libseccomp's, for both architectures."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest

from teaclave.executor.sandbox._syscalls import NUMBERS

ARCHES = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_numbers_match_libseccomp(arch: str) -> None:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        pytest.skip("libseccomp is not installed")
    resolve = ctypes.CDLL(name).seccomp_syscall_resolve_name_arch
    resolve.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    column, audit_arch = ARCHES[arch]
    for syscall, numbers in NUMBERS.items():
        expected = resolve(audit_arch, syscall.encode())
        assert numbers[column] == (expected if expected >= 0 else None), syscall
