"""File-crypto throughput, in memory (suite ``crypto`` of ``python -m bench``).

Encrypts and decrypts the same random data as ``aes-gcm-128``/``aes-gcm-256``
(``teaclave.crypto.aesgcm``, streamed) and ``teaclave-file-128``
(``teaclave.crypto.protected_file``), and as one-shot calls of
``cryptography``'s AESGCM — the baseline. Ratios are each figure over the
baseline with the same key size, measured in the same run.

Streams write to a BytesIO reused across runs (like a file's pages), so the
figures measure the crypto rather than the first touch of a growing buffer;
the one-shot baseline allocates its output on every call.
"""

from __future__ import annotations

import io
import os
import platform as host
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from teaclave.crypto import aesgcm, protected_file

IV = bytes(12)
NAME = "bench.enc"


def mib_per_s(fn: Callable[[], object], size: int, runs: int) -> float:
    """The median throughput of ``runs`` calls of ``fn`` over ``size`` bytes."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return round(size / (1 << 20) / statistics.median(samples), 1)


def reused(sink: io.BytesIO) -> io.BytesIO:
    """``sink``, rewound for the next run."""
    sink.seek(0)
    return sink


def _aes_gcm(key: bytes, data: bytes, runs: int) -> dict[str, float]:
    raw = AESGCM(key)
    sealed = raw.encrypt(IV, data, aesgcm.AAD)
    sink = io.BytesIO()

    def encrypt() -> None:
        aesgcm.encrypt(key, IV, io.BytesIO(data), reused(sink))

    def decrypt() -> None:
        aesgcm.decrypt_to(key, IV, io.BytesIO(sealed), reused(sink), role="bench")

    return {
        "raw_encrypt": mib_per_s(lambda: raw.encrypt(IV, data, aesgcm.AAD), len(data), runs),
        "raw_decrypt": mib_per_s(lambda: raw.decrypt(IV, sealed, aesgcm.AAD), len(data), runs),
        "encrypt": mib_per_s(encrypt, len(data), runs),
        "decrypt": mib_per_s(decrypt, len(data), runs),
    }


def _teaclave_file(key: bytes, data: bytes, runs: int) -> dict[str, float]:
    sealed, sink = io.BytesIO(), io.BytesIO()
    protected_file.encrypt_stream(key, NAME, io.BytesIO(data), sealed)

    def encrypt() -> None:
        protected_file.encrypt_stream(key, NAME, io.BytesIO(data), reused(sink))

    def decrypt() -> None:
        protected_file.decrypt_stream(sealed, key, NAME, reused(sink), role="bench")

    return {
        "encrypt": mib_per_s(encrypt, len(data), runs),
        "decrypt": mib_per_s(decrypt, len(data), runs),
    }


def _with_ratios(figures: dict[str, float], raw: dict[str, float]) -> dict[str, float]:
    return {
        **figures,
        "encrypt_ratio_to_raw": round(figures["encrypt"] / raw["raw_encrypt"], 2),
        "decrypt_ratio_to_raw": round(figures["decrypt"] / raw["raw_decrypt"], 2),
    }


def run(quick: bool) -> dict[str, object]:
    """Every figure of this suite (``quick``: 16 MiB instead of 256 MiB)."""
    size, runs = 16 << 20 if quick else 256 << 20, 3
    data = os.urandom(size)
    key128, key256 = os.urandom(16), os.urandom(32)
    gcm128 = _aes_gcm(key128, data, runs)
    gcm256 = _aes_gcm(key256, data, runs)
    return {
        "machine": f"{host.machine()}, {host.python_implementation()} {host.python_version()}",
        "size_mib": size >> 20,
        "runs": runs,
        "unit": "MiB/s (median)",
        "aes_gcm_128": _with_ratios(gcm128, gcm128),
        "aes_gcm_256": _with_ratios(gcm256, gcm256),
        "teaclave_file_128": _with_ratios(_teaclave_file(key128, data, runs), gcm128),
    }
