"""Evidence providers: raw evidence from the local TEE for 64 bytes of report data.

Adapters over the kernel interfaces, one per stack:

* :class:`ConfigfsTsm` — Linux configfs-tsm (TDX and SEV-SNP guests): create a
  report entry, write ``inblob``, read ``outblob`` (TDX: a quote via the host's
  QGS; SNP: the 1184-byte report), ``auxblob`` (SNP certificates, if the host
  supplies them) and ``provider``, then remove the entry; ``generation`` is
  re-read to detect a concurrent writer.
* :class:`GramineAttestation` — Gramine's ``/dev/attestation`` (SGX): write
  ``user_report_data``, read ``quote``.
* :class:`NitroNsm` — the Nitro Secure Module ``/dev/nsm``: one ioctl carrying
  a CBOR ``{"Attestation": {...}}`` request, answered by the document.

Nothing here checks evidence; the verifiers do.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cbor2

from teaclave.attestation.appraisal import NITRO, SEV_SNP, SGX, TDX

REPORT_DATA_BYTES = 64
TSM_ROOT = Path("/sys/kernel/config/tsm/report")
GRAMINE_ROOT = Path("/dev/attestation")
NSM_DEVICE = Path("/dev/nsm")
TSM_PROVIDERS = {"tdx_guest": TDX, "sev_guest": SEV_SNP}

_NSM_IOCTL = 0xC0200A00  # _IOWR(0x0A, 0, struct nsm_raw): two 16-byte iovecs
_NSM_REQUEST_MAX = 0x1000
_NSM_RESPONSE_MAX = 0x3000


class ProviderError(Exception):
    """The TEE interface is missing, refused the request or answered nonsense."""


class Provider(Protocol):
    """Something that produces evidence binding 64 bytes of report data."""

    @property
    def tee(self) -> str:
        """The TEE type of the evidence (``sgx``, ``tdx``, ``sev-snp``, ``nitro``)."""
        ...

    def evidence(self, report_data: bytes) -> bytes:
        """Raw evidence (quote, report or attestation document) binding ``report_data``."""
        ...


def _check_report_data(report_data: bytes) -> None:
    if len(report_data) != REPORT_DATA_BYTES:
        raise ValueError(f"report data must be {REPORT_DATA_BYTES} bytes, not {len(report_data)}")


def _missing(what: str, path: Path, hint: str) -> ProviderError:
    return ProviderError(f"{what} is not available: {path} does not exist ({hint})")


@dataclass(frozen=True)
class TsmReport:
    """What one configfs-tsm report entry returned."""

    provider: str  # tdx_guest | sev_guest
    outblob: bytes
    auxblob: bytes | None
    generation: int


class ConfigfsTsm:
    """Evidence from Linux configfs-tsm (TDX or SEV-SNP guest, Linux ≥ 6.7)."""

    def __init__(self, root: Path = TSM_ROOT) -> None:
        self.root = root

    @property
    def tee(self) -> str:
        """The TEE behind configfs-tsm, from a probe entry's ``provider``."""
        with self._entry() as entry:
            return _tsm_tee(_read_text(entry / "provider"))

    def evidence(self, report_data: bytes) -> bytes:
        """The ``outblob`` for ``report_data``."""
        return self.report(report_data).outblob

    def report(self, report_data: bytes) -> TsmReport:
        """A full report (outblob, auxblob, provider) for ``report_data``."""
        _check_report_data(report_data)
        with self._entry() as entry:
            (entry / "inblob").write_bytes(report_data)
            generation = int(_read_text(entry / "generation"))
            outblob = (entry / "outblob").read_bytes()
            aux = entry / "auxblob"
            auxblob = aux.read_bytes() if aux.exists() else None
            provider = _read_text(entry / "provider")
            if int(_read_text(entry / "generation")) != generation:
                raise ProviderError("configfs-tsm report was rewritten while being read")
        _tsm_tee(provider)
        if not outblob:
            raise ProviderError(f"configfs-tsm ({provider}) returned empty evidence")
        return TsmReport(provider, outblob, auxblob, generation)

    @contextlib.contextmanager
    def _entry(self) -> Iterator[Path]:
        if not self.root.is_dir():
            raise _missing("configfs-tsm", self.root, "needs a TDX or SEV-SNP guest, Linux ≥ 6.7")
        entry = self.root / f"teaclave-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            self._create(entry)
        except OSError as exc:
            raise ProviderError(f"cannot create configfs-tsm report {entry}: {exc}") from None
        try:
            yield entry
        except (OSError, ValueError) as exc:
            raise ProviderError(f"configfs-tsm report {entry} failed: {exc}") from None
        finally:
            try:
                self._remove(entry)
            except OSError as exc:
                raise ProviderError(f"cannot remove configfs-tsm report {entry}: {exc}") from None

    def _create(self, entry: Path) -> None:
        """mkdir the entry; the kernel populates its attributes."""
        entry.mkdir()

    def _remove(self, entry: Path) -> None:
        """rmdir the entry; the kernel drops its attributes."""
        entry.rmdir()


def _read_text(path: Path) -> str:
    return path.read_text(encoding="ascii").strip()


def _tsm_tee(provider: str) -> str:
    try:
        return TSM_PROVIDERS[provider]
    except KeyError:
        raise ProviderError(f"unknown configfs-tsm provider {provider!r}") from None


class GramineAttestation:
    """SGX quotes from Gramine's ``/dev/attestation`` pseudo-files (DCAP)."""

    tee = SGX

    def __init__(self, root: Path = GRAMINE_ROOT) -> None:
        self.root = root

    def evidence(self, report_data: bytes) -> bytes:
        """Write ``user_report_data``, then read the ``quote`` Gramine obtained for it."""
        _check_report_data(report_data)
        if not self.root.is_dir():
            raise _missing("Gramine attestation", self.root, "run inside a Gramine SGX enclave")
        kind = self.root / "attestation_type"
        if kind.exists() and _read_text(kind) != "dcap":
            raise ProviderError(f"Gramine attestation type is {_read_text(kind)!r}, not 'dcap'")
        try:
            (self.root / "user_report_data").write_bytes(report_data)
            quote = (self.root / "quote").read_bytes()
        except OSError as exc:
            raise ProviderError(f"Gramine attestation failed: {exc}") from None
        if not quote:
            raise ProviderError("Gramine returned an empty quote")
        return quote


class _Iovec(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _NsmRaw(ctypes.Structure):
    _fields_ = [("request", _Iovec), ("response", _Iovec)]


def nsm_ioctl(device: Path, request: bytes) -> bytes:
    """One raw NSM request/response exchange through the driver's ioctl."""
    if len(request) > _NSM_REQUEST_MAX:
        raise ValueError(f"NSM request of {len(request)} bytes exceeds {_NSM_REQUEST_MAX}")
    if not device.exists():
        raise _missing("the Nitro Secure Module", device, "run inside a Nitro enclave")
    sent = ctypes.create_string_buffer(request, len(request))
    received = ctypes.create_string_buffer(_NSM_RESPONSE_MAX)
    message = _NsmRaw(
        _Iovec(ctypes.addressof(sent), len(request)),
        _Iovec(ctypes.addressof(received), _NSM_RESPONSE_MAX),
    )
    try:
        fd = os.open(device, os.O_RDWR)
    except OSError as exc:
        raise ProviderError(f"cannot open {device}: {exc}") from None
    try:
        fcntl.ioctl(fd, _NSM_IOCTL, message)  # the driver updates response.len in place
    except OSError as exc:
        raise ProviderError(f"NSM ioctl on {device} failed: {exc}") from None
    finally:
        os.close(fd)
    return received.raw[: min(message.response.len, _NSM_RESPONSE_MAX)]


class NitroNsm:
    """Attestation documents from the Nitro Secure Module, ``user_data`` = the report data."""

    tee = NITRO

    def __init__(
        self, device: Path = NSM_DEVICE, transact: Callable[[bytes], bytes] | None = None
    ) -> None:
        self.device = device
        self._transact = transact

    def transact(self, request: bytes) -> bytes:
        """Send one CBOR request to the NSM and return its CBOR response."""
        if self._transact is not None:
            return self._transact(request)
        return nsm_ioctl(self.device, request)

    def evidence(self, report_data: bytes) -> bytes:
        """The document for ``{"Attestation": {"user_data": report_data}}``."""
        _check_report_data(report_data)
        body = {"user_data": report_data, "nonce": None, "public_key": None}
        raw = self.transact(cbor2.dumps({"Attestation": body}))
        try:
            response = cbor2.loads(raw)
        except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError):
            raise ProviderError("NSM response is not CBOR") from None
        if isinstance(response, dict) and "Error" in response:
            raise ProviderError(f"NSM refused the request: {response['Error']}")
        answer = response.get("Attestation") if isinstance(response, dict) else None
        document = answer.get("document") if isinstance(answer, dict) else None
        if not isinstance(document, bytes) or not document:
            raise ProviderError("NSM response carries no attestation document")
        return document


def detect(
    *,
    nsm_device: Path = NSM_DEVICE,
    gramine_root: Path = GRAMINE_ROOT,
    tsm_root: Path = TSM_ROOT,
    dev: Path = Path("/dev"),
) -> str | None:
    """The TEE whose evidence interface is present here, or None.

    ``nitro`` (``/dev/nsm``), ``sgx`` (Gramine's ``/dev/attestation``), or
    ``tdx`` / ``sev-snp`` when configfs-tsm is mounted and the guest driver's
    device (``/dev/tdx_guest`` / ``/dev/sev-guest``) exists. Nothing is written.
    """
    if nsm_device.exists():
        return NITRO
    if (gramine_root / "quote").exists():
        return SGX
    if tsm_root.is_dir():
        if (dev / "tdx_guest").exists():
            return TDX
        if (dev / "sev-guest").exists():
            return SEV_SNP
    return None


def interface_paths(name: str) -> tuple[Path, ...]:
    """The files a provider (``attestation.provider``) uses to make evidence (none: simulation).

    Services renew their evidence while running, so these stay usable under the
    runtime manifest. (Nitro's ioctl also needs ``ffi``, which only services
    granted it have.)
    """
    return {
        "configfs-tsm": (TSM_ROOT,),
        "gramine": (GRAMINE_ROOT,),
        "nitro": (NSM_DEVICE,),
    }.get(name, ())


def for_name(name: str) -> Provider:
    """The provider a configuration names (``attestation.provider``), at its default path."""
    factories: dict[str, Callable[[], Provider]] = {
        "configfs-tsm": ConfigfsTsm,
        "gramine": GramineAttestation,
        "nitro": NitroNsm,
    }
    factory = factories.get(name)
    if factory is None:
        raise ValueError(f"no evidence provider {name!r} (known: {', '.join(factories)})")
    return factory()
