"""Which measurements to accept: an auditor-signed enclave info, or (development) our own.

Services (at start) and clients (before connecting) load the same document
through :func:`trusted_measurements`: the enclave info must carry valid
signatures of at least ``threshold`` distinct auditors, given as
``NAME=path.pem`` public keys. Without an enclave info, the measurements of
this installation's own code are accepted — for development only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from teaclave.attestation import enclave_info
from teaclave.attestation.measure import local_measurements
from teaclave.config import SERVICES
from teaclave.core.errors import Status, TeaclaveError


def _untrusted(message: str) -> TeaclaveError:
    return TeaclaveError(Status.FAILED_PRECONDITION, message)


def auditor_keys(specs: Sequence[str]) -> dict[str, enclave_info.AuditorKey]:
    """Auditors' public keys from ``NAME=path.pem`` specifications."""
    keys: dict[str, enclave_info.AuditorKey] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise _untrusted(f"auditor {spec!r}: want NAME=path.pem")
        try:
            keys[name] = enclave_info.load_public_key(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise _untrusted(f"auditor {name!r}: cannot load {path}: {exc}") from None
    return keys


def trusted_measurements(
    document: str | Path | None, auditors: Sequence[str], threshold: int
) -> Mapping[str, frozenset[bytes]]:
    """Accepted measurements per service; FAILED_PRECONDITION naming what is wrong."""
    if not document:
        return local_measurements(SERVICES)
    try:
        data = Path(document).read_bytes()
    except OSError as exc:
        raise _untrusted(f"enclave info {document}: {exc.strerror}") from None
    try:
        info = enclave_info.verify(data, auditors=auditor_keys(auditors), threshold=threshold)
    except (enclave_info.EnclaveInfoError, ValueError) as exc:
        raise _untrusted(f"enclave info {document}: {exc}") from None
    return info.measurements
