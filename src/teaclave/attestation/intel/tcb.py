"""TCB evaluation: the platform TCB in the PCK certificate against Intel's TCB info and QE identity.

Reads the PCK certificate's SGX extension (FMSPC, PCE-ID, SGX TCB components,
PCE SVN), parses TCB info (v3; SGX or TDX) and QE identity (v2) JSON, finds the
matching TCB levels (first level not above the platform), checks the QE and
TDX module identities, and merges statuses with Intel QVL's convergence rule.
Every failure raises :class:`TcbError` with a precise message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from teaclave.attestation import der

SGX_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)


class TcbError(ValueError):
    """The TCB could not be evaluated or is not acceptable; the message says why."""


# --- PCK certificate SGX extension (a small DER walker: SEQUENCE of (OID, value)) ---


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) TLVs directly inside ``data``."""
    try:
        return [(tag, content) for tag, _, content in der.elements(data)]
    except der.DerError as exc:
        raise TcbError(f"SGX extension: {exc}") from None


def _oid(content: bytes) -> str:
    arcs, value = [], 0
    for byte in content:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return ""
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def _pairs(content: bytes) -> dict[str, tuple[int, bytes]]:
    """``{oid: (tag, value)}`` of a SEQUENCE OF SEQUENCE { OID, value }."""
    pairs = {}
    for tag, item in _der_items(content):
        inner = _der_items(item)
        if tag != 0x30 or len(inner) != 2 or inner[0][0] != 0x06:
            raise TcbError("SGX extension: expected SEQUENCE { OID, value }")
        pairs[_oid(inner[0][1])] = inner[1]
    return pairs


@dataclass(frozen=True)
class PckTcb:
    """The platform identity and TCB a PCK certificate vouches for."""

    fmspc: bytes
    pce_id: bytes
    sgx_svns: tuple[int, ...]
    pce_svn: int
    cpu_svn: bytes


def pck_tcb(cert: x509.Certificate) -> PckTcb:
    """The SGX extension (OID 1.2.840.113741.1.13.1) of a PCK certificate."""
    try:
        ext = cert.extensions.get_extension_for_oid(SGX_EXTENSION_OID).value
    except x509.ExtensionNotFound:
        raise TcbError("PCK certificate has no SGX extension") from None
    raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
    top = _der_items(raw)
    if len(top) != 1 or top[0][0] != 0x30:
        raise TcbError("SGX extension is not a SEQUENCE")
    base = SGX_EXTENSION_OID.dotted_string
    fields = _pairs(top[0][1])
    try:
        tcb = _pairs(fields[f"{base}.2"][1])
        svns = tuple(int.from_bytes(tcb[f"{base}.2.{i}"][1], "big") for i in range(1, 17))
        return PckTcb(
            fmspc=fields[f"{base}.4"][1],
            pce_id=fields[f"{base}.3"][1],
            sgx_svns=svns,
            pce_svn=int.from_bytes(tcb[f"{base}.2.17"][1], "big"),
            cpu_svn=tcb[f"{base}.2.18"][1],
        )
    except KeyError as exc:
        raise TcbError(f"PCK SGX extension lacks OID {exc.args[0]}") from None


# --- TCB info and QE identity documents ---


@dataclass(frozen=True)
class Status:
    """A TCB status with its advisories; ``label`` says which level or identity gave it."""

    status: str
    advisories: tuple[str, ...] = ()
    label: str = ""


@dataclass(frozen=True)
class TcbLevel:
    """One platform TCB level of a TCB info document."""

    sgx_svns: tuple[int, ...]
    pce_svn: int
    tdx_svns: tuple[int, ...]
    status: Status


@dataclass(frozen=True)
class Identity:
    """An enclave identity (QE, TD_QE) or a TDX module identity, with its ISVSVN levels."""

    id: str
    mr_signer: bytes
    attributes: bytes
    attributes_mask: bytes
    misc_select: int
    misc_select_mask: int
    isv_prod_id: int | None
    levels: tuple[tuple[int, Status], ...]


@dataclass(frozen=True)
class Document:
    """What every signed collateral document has: an id, a version and a validity window."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime

    def check_current(self, now: datetime, what: str) -> None:
        """TcbError unless ``issue_date ≤ now ≤ next_update``."""
        if now < self.issue_date:
            raise TcbError(f"{what} is not valid before {self.issue_date.isoformat()}")
        if now > self.next_update:
            raise TcbError(f"{what} expired at {self.next_update.isoformat()}")


@dataclass(frozen=True)
class TcbInfo(Document):
    """A TCB info document (SGX or TDX)."""

    fmspc: bytes
    pce_id: bytes
    levels: tuple[TcbLevel, ...]
    tdx_module: Identity | None
    tdx_modules: tuple[Identity, ...]


@dataclass(frozen=True)
class QeIdentity(Document):
    """A QE identity document (``QE`` or ``TD_QE``)."""

    identity: Identity


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _document(text: str, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        doc = json.loads(text)
        fields = {
            "id": str(doc["id"]),
            "version": int(doc["version"]),
            "issue_date": _utc(doc["issueDate"]),
            "next_update": _utc(doc["nextUpdate"]),
        }
    except (ValueError, TypeError, KeyError) as exc:
        raise TcbError(f"malformed {what}: {exc!r}") from None
    return doc, fields


def _status(level: dict[str, Any], label: str = "") -> Status:
    status = str(level["tcbStatus"])
    if status not in STATUSES:
        raise ValueError(f"unknown TCB status {status!r}")
    return Status(status, tuple(str(a) for a in level.get("advisoryIDs", ())), label)


def _identity(doc: dict[str, Any]) -> Identity:
    levels = tuple(
        (int(level["tcb"]["isvsvn"]), _status(level)) for level in doc.get("tcbLevels", ())
    )
    return Identity(
        id=str(doc.get("id", "")),
        mr_signer=bytes.fromhex(doc["mrsigner"]),
        attributes=bytes.fromhex(doc["attributes"]),
        attributes_mask=bytes.fromhex(doc["attributesMask"]),
        misc_select=int(doc.get("miscselect", "0"), 16),
        misc_select_mask=int(doc.get("miscselectMask", "0"), 16),
        isv_prod_id=int(doc["isvprodid"]) if "isvprodid" in doc else None,
        levels=levels,
    )


def _svns(components: Sequence[dict[str, Any]]) -> tuple[int, ...]:
    svns = tuple(int(c["svn"]) for c in components)
    if len(svns) != 16:
        raise ValueError(f"{len(svns)} TCB components, not 16")
    return svns


def parse_tcb_info(text: str) -> TcbInfo:
    """A TCB info v3 document (the signed inner JSON)."""
    doc, fields = _document(text, "TCB info")
    try:
        levels = tuple(
            TcbLevel(
                _svns(level["tcb"]["sgxtcbcomponents"]),
                int(level["tcb"]["pcesvn"]),
                _svns(level["tcb"]["tdxtcbcomponents"])
                if "tdxtcbcomponents" in level["tcb"]
                else (),
                _status(level),
            )
            for level in doc["tcbLevels"]
        )
        module = doc.get("tdxModule")
        return TcbInfo(
            **fields,
            fmspc=bytes.fromhex(doc["fmspc"]),
            pce_id=bytes.fromhex(doc["pceId"]),
            levels=levels,
            tdx_module=_identity({"id": "tdxModule", **module}) if module else None,
            tdx_modules=tuple(_identity(m) for m in doc.get("tdxModuleIdentities", ())),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TcbError(f"malformed TCB info: {exc!r}") from None


def parse_qe_identity(text: str) -> QeIdentity:
    """A QE identity v2 document (the signed inner JSON)."""
    doc, fields = _document(text, "QE identity")
    try:
        return QeIdentity(**fields, identity=_identity(doc))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TcbError(f"malformed QE identity: {exc!r}") from None


# --- evaluation ---


def _masked_equal(value: bytes, expected: bytes, mask: bytes) -> bool:
    if not len(value) == len(expected) == len(mask):
        return False
    return all(v & m == e & m for v, e, m in zip(value, expected, mask, strict=True))


def _isv_level(identity: Identity, isv_svn: int, what: str) -> Status:
    for level_svn, status in identity.levels:
        if level_svn <= isv_svn:
            return Status(status.status, status.advisories, f"{identity.id} {status.status}")
    lowest = min((svn for svn, _ in identity.levels), default=None)
    raise TcbError(f"no matching {what} TCB level (ISVSVN {isv_svn} < {lowest})")


def qe_status(
    identity: Identity, *, mr_signer: bytes, isv_prod_id: int, misc_select: int,
    attributes: bytes, isv_svn: int,
) -> Status:  # fmt: skip
    """The Quoting Enclave's status under its identity document."""
    if mr_signer != identity.mr_signer:
        raise TcbError(f"QE MRSIGNER {mr_signer.hex()} is not {identity.id}'s")
    if isv_prod_id != identity.isv_prod_id:
        raise TcbError(f"QE ISVPRODID {isv_prod_id} is not {identity.isv_prod_id}")
    if misc_select & identity.misc_select_mask != identity.misc_select & identity.misc_select_mask:
        raise TcbError(f"QE MISCSELECT {misc_select:#010x} does not match the QE identity")
    if attributes[0] & 0x02:
        raise TcbError("QE is a debug enclave")
    if not _masked_equal(attributes, identity.attributes, identity.attributes_mask):
        raise TcbError(f"QE ATTRIBUTES {attributes.hex()} do not match the QE identity")
    return _isv_level(identity, isv_svn, "QE")


def _shortfalls(level: TcbLevel, pck: PckTcb, tee_tcb_svn: bytes | None) -> list[str]:
    """Every way ``level`` is above the platform (none if the platform meets it)."""
    found = [
        f"PCK SGX TCB comp {i} = {have} < {need}"
        for i, (have, need) in enumerate(zip(pck.sgx_svns, level.sgx_svns, strict=True), 1)
        if have < need
    ]
    if pck.pce_svn < level.pce_svn:
        found.append(f"PCE SVN = {pck.pce_svn} < {level.pce_svn}")
    if tee_tcb_svn is not None:
        if not level.tdx_svns:
            return [*found, "TCB level has no TDX components"]
        first = 2 if tee_tcb_svn[1] > 0 else 0  # the module (bytes 0, 1) is judged separately
        found += [
            f"TEE_TCB_SVN[{i}]={tee_tcb_svn[i]} < {level.tdx_svns[i]}"
            for i in range(first, 16)
            if tee_tcb_svn[i] < level.tdx_svns[i]
        ]
    return found


def platform_status(info: TcbInfo, pck: PckTcb, tee_tcb_svn: bytes | None = None) -> Status:
    """The first TCB level the platform meets; TcbError lists the shortfalls of the lowest one."""
    shortfalls = ["TCB info has no levels"]
    for level in info.levels:
        shortfalls = _shortfalls(level, pck, tee_tcb_svn)
        if not shortfalls:
            return level.status
    raise TcbError(f"no matching TCB level ({'; '.join(shortfalls)})")


def tdx_module_status(
    info: TcbInfo, tee_tcb_svn: bytes, mr_signer_seam: bytes, seam_attributes: bytes
) -> Status:
    """The TDX module's status: its identity ``TDX_<major>`` and its ISVSVN level."""
    major = tee_tcb_svn[1]
    if major == 0:
        module = info.tdx_module
        if module is None:
            raise TcbError("TCB info has no tdxModule")
    else:
        wanted = f"TDX_{major:02X}"
        module = next((m for m in info.tdx_modules if m.id.upper() == wanted), None)
        if module is None:
            raise TcbError(f"TCB info has no TDX module identity {wanted}")
    if mr_signer_seam != module.mr_signer:
        raise TcbError(f"MRSIGNERSEAM {mr_signer_seam.hex()} is not {module.id}'s")
    if not _masked_equal(seam_attributes, module.attributes, module.attributes_mask):
        raise TcbError(f"SEAMATTRIBUTES {seam_attributes.hex()} do not match {module.id}")
    if major == 0:
        return Status("UpToDate", (), f"{module.id} UpToDate")
    return _isv_level(module, tee_tcb_svn[0], "TDX module")


def converge(platform: Status, other: Status) -> Status:
    """Intel QVL's merge of the platform status with a QE or TDX module status."""
    advisories = tuple(dict.fromkeys([*platform.advisories, *other.advisories]))
    status = platform.status
    if other.status == "Revoked":
        status = "Revoked"
    elif other.status == "OutOfDate":
        if status in ("UpToDate", "SWHardeningNeeded"):
            status = "OutOfDate"
        elif status in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            status = "OutOfDateConfigurationNeeded"
    return Status(status, advisories, platform.label)


def converge_all(platform: Status, others: Iterable[Status]) -> Status:
    """:func:`converge` over several statuses."""
    for other in others:
        platform = converge(platform, other)
    return platform
