"""Intel DCAP quotes (v3, v4, v5; SGX and TDX) parsed into their fields, nothing verified.

Layouts follow Intel's *Quote Library API* appendices: a 48-byte header, the
body (SGX enclave report, TD report 1.0 or 1.5; v5 prefixes a 6-byte body
descriptor), then the signature data (quote signature, attestation key, and the
QE certification data: QE report, its signature, QE auth data, PCK chain).
Bytes after the signature data are tolerated and kept in ``trailing``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography import x509

from teaclave.attestation.appraisal import SGX, TDX
from teaclave.attestation.intel.collateral import CollateralError, load_chain

HEADER_SIZE = 48
SGX_REPORT_SIZE = 384
TD10_REPORT_SIZE = 584
TD15_REPORT_SIZE = 648
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
KEY_TYPE_ECDSA_P256 = 2
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6
_BODY_SIZES = {1: SGX_REPORT_SIZE, 2: TD10_REPORT_SIZE, 3: TD15_REPORT_SIZE}


class QuoteFormatError(ValueError):
    """The bytes are not a well-formed DCAP quote; the message says where."""


class _Reader:
    """Bounds-checked little-endian reads from a byte string."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, size: int, field: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            have = len(self.data) - self.pos
            raise QuoteFormatError(
                f"{self.what} truncated: {field} needs {size} bytes, {have} left"
            )
        chunk, self.pos = self.data[self.pos : end], end
        return chunk

    def u16(self, field: str) -> int:
        return int(struct.unpack("<H", self.take(2, field))[0])

    def u32(self, field: str) -> int:
        return int(struct.unpack("<I", self.take(4, field))[0])


@dataclass(frozen=True)
class Header:
    """The 48-byte quote header."""

    version: int
    key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True)
class EnclaveReport:
    """An SGX enclave report body (the ISV enclave's, or the Quoting Enclave's)."""

    raw: bytes
    cpu_svn: bytes
    misc_select: int
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    report_data: bytes

    @property
    def debug(self) -> bool:
        """ATTRIBUTES.DEBUG (flag bit 1)."""
        return bool(self.attributes[0] & 0x02)


@dataclass(frozen=True)
class TdReport:
    """A TD report body: TDX 1.0 (584 bytes) or 1.5 (648 bytes, with SVN2 and MRSERVICETD)."""

    raw: bytes
    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    tee_tcb_svn2: bytes = b""
    mr_service_td: bytes = b""

    @property
    def debug(self) -> bool:
        """TDATTRIBUTES.DEBUG (bit 0)."""
        return bool(self.td_attributes[0] & 0x01)

    @property
    def sept_ve_disable(self) -> bool:
        """TDATTRIBUTES.SEPT_VE_DISABLE (bit 28)."""
        return bool(int.from_bytes(self.td_attributes, "little") >> 28 & 1)


@dataclass(frozen=True)
class Certification:
    """The QE certification data: QE report and signature, QE auth data, and the PCK data."""

    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    cert_type: int
    cert_data: bytes

    def pck_chain(self) -> list[x509.Certificate]:
        """The PCK chain (leaf first) of certification data type 5; QuoteFormatError otherwise."""
        if self.cert_type != CERT_TYPE_PCK_CHAIN:
            raise QuoteFormatError(
                f"certification data type {self.cert_type} carries no PCK certificate chain"
            )
        try:
            chain = load_chain(self.cert_data)
        except CollateralError as exc:
            raise QuoteFormatError(f"PCK certificate chain: {exc}") from None
        if not chain:
            raise QuoteFormatError("PCK certificate chain is empty")
        return chain


@dataclass(frozen=True)
class Quote:
    """A parsed quote: ``signed`` is the region the attestation key signs."""

    header: Header
    body_type: int
    body: EnclaveReport | TdReport
    signed: bytes
    signature: bytes
    attestation_key: bytes
    certification: Certification
    trailing: bytes

    @property
    def tee(self) -> str:
        """``"sgx"`` or ``"tdx"``."""
        return TDX if isinstance(self.body, TdReport) else SGX


def parse_enclave_report(raw: bytes) -> EnclaveReport:
    """A 384-byte SGX report body."""
    r = _Reader(raw, "enclave report")
    cpu_svn = r.take(16, "CPUSVN")
    misc_select = r.u32("MISCSELECT")
    r.take(28, "reserved")
    attributes = r.take(16, "ATTRIBUTES")
    mr_enclave = r.take(32, "MRENCLAVE")
    r.take(32, "reserved")
    mr_signer = r.take(32, "MRSIGNER")
    r.take(32, "reserved")
    config_id = r.take(64, "CONFIGID")
    isv_prod_id, isv_svn, config_svn = r.u16("ISVPRODID"), r.u16("ISVSVN"), r.u16("CONFIGSVN")
    r.take(58, "reserved")
    report_data = r.take(64, "REPORTDATA")
    return EnclaveReport(
        raw, cpu_svn, misc_select, attributes, mr_enclave, mr_signer, config_id,
        isv_prod_id, isv_svn, config_svn, report_data,
    )  # fmt: skip


def parse_td_report(raw: bytes) -> TdReport:
    """A TD report body, 1.0 or 1.5 according to its length."""
    r = _Reader(raw, "TD report")
    fields = {attr: r.take(size, label) for attr, size, label in _TD10_FIELDS}
    rtmrs = (r.take(48, "RTMR0"), r.take(48, "RTMR1"), r.take(48, "RTMR2"), r.take(48, "RTMR3"))
    report_data = r.take(64, "REPORTDATA")
    svn2 = service_td = b""
    if len(raw) == TD15_REPORT_SIZE:
        svn2, service_td = r.take(16, "TEE_TCB_SVN2"), r.take(48, "MRSERVICETD")
    return TdReport(raw=raw, **fields, rtmrs=rtmrs, report_data=report_data,
                    tee_tcb_svn2=svn2, mr_service_td=service_td)  # fmt: skip


_TD10_FIELDS = (
    ("tee_tcb_svn", 16, "TEE_TCB_SVN"),
    ("mr_seam", 48, "MRSEAM"),
    ("mr_signer_seam", 48, "MRSIGNERSEAM"),
    ("seam_attributes", 8, "SEAMATTRIBUTES"),
    ("td_attributes", 8, "TDATTRIBUTES"),
    ("xfam", 8, "XFAM"),
    ("mr_td", 48, "MRTD"),
    ("mr_config_id", 48, "MRCONFIGID"),
    ("mr_owner", 48, "MROWNER"),
    ("mr_owner_config", 48, "MROWNERCONFIG"),
)


def _parse_header(r: _Reader) -> Header:
    version, key_type, tee_type = r.u16("version"), r.u16("key type"), r.u32("TEE type")
    qe_svn, pce_svn = r.u16("QE SVN"), r.u16("PCE SVN")
    vendor, user_data = r.take(16, "QE vendor ID"), r.take(20, "user data")
    if version not in (3, 4, 5):
        raise QuoteFormatError(f"unsupported quote version {version}")
    if key_type != KEY_TYPE_ECDSA_P256:
        raise QuoteFormatError(f"unsupported attestation key type {key_type} (only 2, P-256)")
    if tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX) or (version == 3 and tee_type):
        raise QuoteFormatError(f"unsupported TEE type {tee_type:#x} in a v{version} quote")
    return Header(version, key_type, tee_type, qe_svn, pce_svn, vendor, user_data)


def _body_type(r: _Reader, header: Header) -> int:
    if header.version < 5:
        return 1 if header.tee_type == TEE_TYPE_SGX else 2
    body_type, size = r.u16("body type"), r.u32("body size")
    if body_type not in _BODY_SIZES or _BODY_SIZES[body_type] != size:
        raise QuoteFormatError(f"unsupported v5 body type {body_type} of {size} bytes")
    if (body_type == 1) != (header.tee_type == TEE_TYPE_SGX):
        raise QuoteFormatError(
            f"v5 body type {body_type} does not fit TEE type {header.tee_type:#x}"
        )
    return body_type


def _parse_certification(r: _Reader) -> Certification:
    qe_report = parse_enclave_report(r.take(SGX_REPORT_SIZE, "QE report"))
    qe_signature = r.take(64, "QE report signature")
    qe_auth_data = r.take(r.u16("QE auth data size"), "QE auth data")
    cert_type = r.u16("certification data type")
    cert_data = r.take(r.u32("certification data size"), "certification data")
    return Certification(qe_report, qe_signature, qe_auth_data, cert_type, cert_data)


def parse_quote(data: bytes) -> Quote:
    """Parse a DCAP quote; QuoteFormatError names the first field that does not fit."""
    r = _Reader(bytes(data), "quote")
    header = _parse_header(r)
    body_type = _body_type(r, header)
    raw_body = r.take(_BODY_SIZES[body_type], "report body")
    body = parse_enclave_report(raw_body) if body_type == 1 else parse_td_report(raw_body)
    signed = r.data[: r.pos]
    sig = _Reader(r.take(r.u32("signature data size"), "signature data"), "signature data")
    signature, attestation_key = sig.take(64, "quote signature"), sig.take(64, "attestation key")
    if header.version == 3:
        certification = _parse_certification(sig)
    else:
        outer_type = sig.u16("certification data type")
        if outer_type != CERT_TYPE_QE_REPORT:
            raise QuoteFormatError(f"v{header.version} certification data type {outer_type}, not 6")
        certification = _parse_certification(
            _Reader(
                sig.take(sig.u32("certification data size"), "QE report data"), "QE report data"
            )
        )
    trailing = r.data[r.pos :]
    return Quote(
        header, body_type, body, signed, signature, attestation_key, certification, trailing
    )
