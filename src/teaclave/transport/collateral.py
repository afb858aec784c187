"""Vendor collateral for the hardware verifiers: a file cache, refreshed over HTTP when stale.

Intel DCAP collateral (TCB info, QE identity, PCK and root CA CRLs with their
issuer chains) comes from a PCCS or Intel's PCS (API v4) and is kept per
(SGX|TDX, FMSPC, PCK CA) as dcap-qvl ``QuoteCollateralV3`` JSON. AMD VCEKs come
from the KDS per (product, CHIP_ID, REPORTED_TCB), with the product's ASK/ARK
chain. An entry that is complete and current at ``now`` (every issueDate /
nextUpdate, CRL and certificate window) is used without any network;
otherwise it is fetched (urllib, with a timeout) and stored atomically (0600).
Nothing fetched is trusted here: the verifiers check signatures and chains,
the cache only decides what is current. :class:`CollateralUnavailable` says
what is missing or expired, since when, and how to refresh it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from teaclave.attestation import pki, roots, snp
from teaclave.attestation.appraisal import TDX
from teaclave.attestation.intel.collateral import Collateral, CollateralError, SignedDocument
from teaclave.attestation.intel.quote import parse_quote
from teaclave.attestation.intel.tcb import (
    Document,
    TcbError,
    parse_qe_identity,
    parse_tcb_info,
    pck_tcb,
)
from teaclave.config import Config
from teaclave.core.errors import Status, TeaclaveError

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
INTEL_ROOT_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
AMD_KDS_URL = "https://kdsintf.amd.com"
PCK_CAS = ("processor", "platform")
MAX_RESPONSE_BYTES = 1 << 20

_T = TypeVar("_T")
_FMSPC = re.compile(r"[0-9a-f]{12}")
_HEX = re.compile(rb"\s*([0-9a-fA-F]{2})+\s*")


class CollateralUnavailable(TeaclaveError):
    """No current collateral: not cached (or expired) and not fetchable."""

    def __init__(self, message: str) -> None:
        super().__init__(Status.UNAVAILABLE, message)


class _FetchError(Exception):
    """A download failed; the message names the URL and why."""


@dataclass(frozen=True)
class _Response:
    url: str
    body: bytes
    headers: Message

    def header(self, *names: str) -> bytes:
        """The first of the ``names`` headers, URL-decoded (PCS issuer chains)."""
        for name in names:
            value = self.headers.get(name)
            if value:
                return unquote(value).encode()
        raise _FetchError(f"{self.url} sent no {names[0]} header")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(what: str, start: datetime, end: datetime | None, now: datetime) -> list[str]:
    if now < start:
        return [f"{what} is not valid before {_iso(start)}"]
    if end is not None and now > end:
        return [f"{what} expired at {_iso(end)}"]
    return []


def _certificate_problems(certs: Iterable[x509.Certificate], what: str, now: datetime) -> list[str]:
    return [
        problem
        for cert in certs
        for problem in _window(
            f"{what} certificate {pki.name(cert)!r}",
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            now,
        )
    ]


def intel_problems(collateral: Collateral, now: datetime) -> list[str]:
    """Why ``collateral`` is not complete and current at ``now`` (nothing if it is)."""
    problems: list[str] = []
    documents: list[tuple[str, SignedDocument | None, Callable[[str], Document]]] = [
        ("TCB info", collateral.tcb_info, parse_tcb_info),
        ("QE identity", collateral.qe_identity, parse_qe_identity),
    ]
    for what, document, parse in documents:
        if document is None:
            problems.append(f"{what} is missing")
            continue
        try:
            parsed = parse(document.text)
        except TcbError as exc:
            problems.append(str(exc))
            continue
        problems += _window(what, parsed.issue_date, parsed.next_update, now)
        problems += _certificate_problems(document.issuer_chain, f"{what} issuer", now)
    crls = (("PCK CRL", collateral.pck_crl), ("root CA CRL", collateral.root_ca_crl))
    for what, crl in crls:
        if crl is None:
            problems.append(f"{what} is missing")
        else:
            problems += _window(what, crl.last_update_utc, crl.next_update_utc, now)
    problems += _certificate_problems(collateral.pck_crl_issuer_chain, "PCK CRL issuer", now)
    return problems


def pck_ca(issuer: x509.Name, what: str) -> str:
    """``processor`` or ``platform``: the PCK CA named ``issuer``; CollateralError otherwise."""
    names = issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(names[0].value) if names else issuer.rfc4514_string()
    for ca in PCK_CAS:
        if name == f"Intel SGX PCK {ca.capitalize()} CA":
            return ca
    raise CollateralError(f"{what} is not issued by an Intel PCK CA (issuer {name!r})")


def quote_needs(quote: bytes) -> tuple[str, bool, str]:
    """``(fmspc, tdx, PCK CA)``: the collateral a quote needs; ValueError if it cannot say."""
    parsed = parse_quote(quote)
    leaf = parsed.certification.pck_chain()[0]
    fmspc = pck_tcb(leaf).fmspc.hex()
    return fmspc, parsed.tee == TDX, pck_ca(leaf.issuer, "the PCK certificate")


def report_product(report: snp.Report) -> str:
    """The product line of an SNP report from its CPUID family and model (v3+), else ""."""
    if len(report.cpuid) < 2:
        return ""
    family, model = report.cpuid[0], report.cpuid[1]
    if family == 0x19:
        return "Milan" if model < 0x10 else "Genoa"
    return "Turin" if family == 0x1A else ""


def dcap_qvl_json(collateral: Collateral) -> bytes:
    """``collateral`` as dcap-qvl ``QuoteCollateralV3`` JSON (the inverse of its loader)."""

    def pem(chain: Sequence[x509.Certificate]) -> str:
        return b"".join(cert.public_bytes(Encoding.PEM) for cert in chain).decode()

    doc: dict[str, str] = {"pck_crl_issuer_chain": pem(collateral.pck_crl_issuer_chain)}
    for key, crl in (("pck_crl", collateral.pck_crl), ("root_ca_crl", collateral.root_ca_crl)):
        if crl is not None:
            doc[key] = crl.public_bytes(Encoding.DER).hex()
    signed = (("tcb_info", collateral.tcb_info), ("qe_identity", collateral.qe_identity))
    for prefix, document in signed:
        if document is not None:
            doc[f"{prefix}_issuer_chain"] = pem(document.issuer_chain)
            doc[prefix] = document.text
            doc[f"{prefix}_signature"] = document.signature.hex()
    return json.dumps(doc, indent=1).encode()


def _crl_body(body: bytes) -> bytes:
    """A CRL as served: DER, PEM, or hex text (PCCS's root CA CRL)."""
    return bytes.fromhex(body.decode()) if _HEX.fullmatch(body) else body


def _pem_to_der(body: bytes) -> bytes:
    if body.lstrip().startswith(b"-----BEGIN"):
        return pki.load_pem_certificates(body)[0].public_bytes(Encoding.DER)
    return body


def _base_url(url: str, what: str) -> str:
    if url and urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{what} must be an http(s) URL, not {url!r}")
    return url.rstrip("/")


class CollateralCache:
    """Collateral in ``directory``, refreshed from ``pccs_url`` (Intel) / ``kds_url`` (AMD)."""

    def __init__(
        self, directory: Path, *, pccs_url: str = "", kds_url: str = "", timeout: float = 10.0
    ) -> None:
        self.directory = Path(directory)
        self.pccs_url = _base_url(pccs_url, "pccs_url")
        self.kds_url = _base_url(kds_url, "kds_url")
        self.timeout = timeout

    @classmethod
    def from_config(cls, config: Config) -> CollateralCache:
        """The cache of a platform configuration (``attestation.collateral_dir`` and URLs)."""
        settings = config.attestation
        directory = Path(settings.collateral_dir or config.data_path / "collateral")
        return cls(directory, pccs_url=settings.pccs_url, kds_url=settings.kds_url)

    # --- Intel ---

    def intel(self, fmspc: str, *, tdx: bool, ca: str, now: datetime) -> Collateral:
        """Collateral for quotes of this FMSPC whose PCK is issued by the ``ca`` PCK CA."""
        fmspc, now = _fmspc(fmspc), _utc(now)
        if ca not in PCK_CAS:
            raise ValueError(f"PCK CA must be one of {', '.join(PCK_CAS)}, not {ca!r}")
        tee = "TDX" if tdx else "SGX"

        def fetch() -> bytes:
            return dcap_qvl_json(self._fetch_intel(fmspc, tdx=tdx, ca=ca))

        return self._current(
            self._intel_path(fmspc, tdx, ca),
            f"Intel collateral for {tee} FMSPC {fmspc} (PCK {ca} CA)",
            load=Collateral.from_dcap_qvl_json,
            problems=lambda collateral: intel_problems(collateral, now),
            fetch=fetch if self.pccs_url else None,
            refresh="set attestation.pccs_url, or import current collateral (store_intel)",
            now=now,
        )

    def intel_for_quote(self, quote: bytes, *, now: datetime) -> Collateral:
        """The collateral a quote needs (:func:`quote_needs`); ValueError if it cannot say."""
        fmspc, tdx, ca = quote_needs(quote)
        return self.intel(fmspc, tdx=tdx, ca=ca, now=now)

    def store_intel(self, fmspc: str, *, tdx: bool, collateral_json: bytes) -> None:
        """Import dcap-qvl JSON collateral (from the vectors, a PCCS dump…) for offline use.

        CollateralError if it is malformed or not the TCB info of ``fmspc`` for SGX/TDX.
        """
        fmspc = _fmspc(fmspc)
        collateral = Collateral.from_dcap_qvl_json(collateral_json)
        if collateral.tcb_info is None:
            raise CollateralError("collateral has no TCB info")
        try:
            info = parse_tcb_info(collateral.tcb_info.text)
        except TcbError as exc:
            raise CollateralError(str(exc)) from None
        tee = "TDX" if tdx else "SGX"
        if (info.id, info.fmspc.hex()) != (tee, fmspc):
            raise CollateralError(
                f"collateral is the TCB info of {info.id} FMSPC {info.fmspc.hex()}, "
                f"not of {tee} FMSPC {fmspc}"
            )
        if collateral.pck_crl is None:
            raise CollateralError("collateral has no PCK CRL")
        ca = pck_ca(collateral.pck_crl.issuer, "the PCK CRL")
        self._write(self._intel_path(fmspc, tdx, ca), dcap_qvl_json(collateral))

    def _intel_path(self, fmspc: str, tdx: bool, ca: str) -> Path:
        return self.directory / "intel" / f"{'tdx' if tdx else 'sgx'}-{fmspc}-{ca}.json"

    def _fetch_intel(self, fmspc: str, *, tdx: bool, ca: str) -> Collateral:
        base = self.pccs_url
        tee = "tdx" if tdx else "sgx"
        tcb = self._get(f"{base}/{tee}/certification/v4/tcb?fmspc={fmspc}")
        qe = self._get(f"{base}/{tee}/certification/v4/qe/identity")
        pck = self._get(f"{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der")
        pcs = urlsplit(base).hostname == urlsplit(INTEL_PCS_URL).hostname
        root = self._get(INTEL_ROOT_CRL_URL if pcs else f"{base}/sgx/certification/v4/rootcacrl")
        try:
            return Collateral.from_pcs(
                tcb_info=tcb.body,
                tcb_info_issuer_chain=tcb.header(
                    "TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"
                ),
                qe_identity=qe.body,
                qe_identity_issuer_chain=qe.header("SGX-Enclave-Identity-Issuer-Chain"),
                pck_crl=_crl_body(pck.body),
                pck_crl_issuer_chain=pck.header("SGX-PCK-CRL-Issuer-Chain"),
                root_ca_crl=_crl_body(root.body),
            )
        except (CollateralError, ValueError) as exc:
            raise _FetchError(f"{base} sent malformed collateral: {exc}") from None

    # --- AMD ---

    def amd_vek(
        self, product: str, chip_id: bytes, reported_tcb: int, now: datetime
    ) -> tuple[bytes, bytes]:
        """``(VCEK DER, ASK+ARK PEM)`` of a chip at a REPORTED_TCB (the report's u64)."""
        product, now = roots.amd_product(product), _utc(now)
        if len(chip_id) != 64 or not any(chip_id):
            raise CollateralUnavailable(
                "the report has no CHIP_ID (VLEK-signed, or MASK_CHIP_ID set): its endorsement "
                "key cannot be looked up in AMD's KDS; use the VEK and CA chain that came with it"
            )
        spls = snp.tcb_parts(reported_tcb, product)
        hw_id = (chip_id[:8] if product == "Turin" else chip_id).hex()
        query = "&".join(f"{name}SPL={value}" for name, value in spls.items())
        amd = self.directory / "amd"
        refresh = "set attestation.kds_url, or use the VEK and CA chain sent with the report"
        vek = self._current(
            amd / f"vcek-{product}-{hw_id}-{reported_tcb:016x}.der",
            f"AMD VCEK of {product} chip {hw_id[:16]}… at TCB 0x{reported_tcb:016x}",
            load=pki.load_der_certificate,
            problems=lambda cert: _certificate_problems([cert], "VCEK", now),
            fetch=self._kds(f"/vcek/v1/{product}/{quote(hw_id)}?{query}", _pem_to_der),
            refresh=refresh,
            now=now,
        )
        chain = self._current(
            amd / f"cert_chain-{product}.pem",
            f"AMD {product} certificate chain (ASK, ARK)",
            load=_pem_chain,
            problems=lambda certs: _certificate_problems(certs, f"{product} chain", now),
            fetch=self._kds(f"/vcek/v1/{product}/cert_chain", lambda body: body),
            refresh=refresh,
            now=now,
        )
        return vek.public_bytes(Encoding.DER), b"".join(c.public_bytes(Encoding.PEM) for c in chain)

    def amd_for_report(
        self, report: bytes, *, now: datetime, product: str = ""
    ) -> tuple[bytes, bytes]:
        """:meth:`amd_vek` for an SNP report (``product`` from its CPUID fields unless given).

        ValueError if the report is malformed or does not say its product.
        """
        parsed = snp.parse_report(report)
        product = product or report_product(parsed)
        if not product:
            raise ValueError(f"an SNP v{parsed.version} report does not name its product line")
        return self.amd_vek(product, parsed.chip_id, parsed.reported_tcb, now)

    def _kds(self, path: str, convert: Callable[[bytes], bytes]) -> Callable[[], bytes] | None:
        if not self.kds_url:
            return None
        return lambda: convert(self._get(self.kds_url + path).body)

    # --- shared ---

    def _current(
        self,
        path: Path,
        what: str,
        *,
        load: Callable[[bytes], _T],
        problems: Callable[[_T], list[str]],
        fetch: Callable[[], bytes] | None,
        refresh: str,
        now: datetime,
    ) -> _T:
        """The cached ``path`` if current at ``now``; else fetched, stored, and current."""
        try:
            cached = load(path.read_bytes())
            found = problems(cached)
        except FileNotFoundError:
            found = [f"nothing is cached in {path}"]
        except ValueError as exc:
            found = [f"the cached {path} is unreadable ({exc})"]
        if not found:
            return cached
        stale = f"{what} is not available at {_iso(now)}: {'; '.join(found)}"
        if fetch is None:
            raise CollateralUnavailable(f"{stale}; to refresh it, {refresh}")
        try:
            data = fetch()
            fetched = load(data)
        except _FetchError as exc:
            raise CollateralUnavailable(f"{stale}; refreshing failed: {exc}") from None
        except ValueError as exc:
            raise CollateralUnavailable(f"{stale}; refreshing failed: malformed: {exc}") from None
        self._write(path, data)
        found = problems(fetched)
        if found:
            raise CollateralUnavailable(f"{what} as fetched now: {'; '.join(found)}")
        return fetched

    def _get(self, url: str) -> _Response:
        request = urllib.request.Request(url, headers={"User-Agent": "teaclave"})  # noqa: S310
        try:
            # The base URLs are checked to be http(s) in the constructor.
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read(MAX_RESPONSE_BYTES + 1)
                headers = response.headers
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _FetchError(f"GET {url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise _FetchError(f"GET {url}: {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise _FetchError(f"GET {url}: {exc}") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise _FetchError(f"GET {url}: response larger than {MAX_RESPONSE_BYTES} bytes")
        return _Response(url, body, headers)

    def _write(self, path: Path, data: bytes) -> None:
        """Replace ``path`` with ``data`` atomically (a private temporary file, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as file:
                os.fchmod(file.fileno(), 0o600)
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def _fmspc(text: str) -> str:
    fmspc = text.lower()
    if not _FMSPC.fullmatch(fmspc):
        raise ValueError(f"FMSPC must be 12 hex digits, not {text!r}")
    return fmspc


def _utc(now: datetime) -> datetime:
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _pem_chain(data: bytes) -> list[x509.Certificate]:
    try:
        return pki.load_pem_certificates(data)
    except pki.PkiError as exc:
        raise ValueError(str(exc)) from None
