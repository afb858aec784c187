"""``teaclave verify-evidence FILE``: appraise hardware attestation evidence, offline first.

The kind of evidence is read from the bytes: an X.509 certificate (PEM or DER)
is RA-TLS, a COSE_Sign1 (CBOR ``0x84`` or tag 18) a Nitro document, a 1184-byte
report an SEV-SNP report, a quote header (versions 3 to 5, ECDSA P-256 key) an
Intel SGX/TDX quote; base64 text is decoded first. Roots are the bundled
vendor roots unless ``--root`` is given; collateral comes from ``--collateral``
/ ``--vek`` + ``--ca-chain`` or from a collateral cache (``--config``'s, or
``--cache-dir``, ``--pccs-url``, ``--kds-url``). Exit status: 0 valid, 1 rejected, 2 usage.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from teaclave.attestation import nitro, pki, ratls, roots, snp
from teaclave.attestation.appraisal import SGX, TDX, Appraisal
from teaclave.attestation.intel import NO_COLLATERAL, Collateral, CollateralError, verify_quote
from teaclave.cli.context import (
    DEFAULT_COLLATERAL,
    CliError,
    Context,
    Subcommands,
    UsageError,
    add_command,
)
from teaclave.config import load_config
from teaclave.transport.collateral import CollateralCache

RATLS = "RA-TLS certificate"
NITRO = "AWS Nitro attestation document"
SNP = "AMD SEV-SNP attestation report"
INTEL = "Intel SGX/TDX quote"

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----"
)
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\s]+")
_COSE_SIGN1 = (0x84, 0xD2)  # untagged array of 4, tag 18
_QUOTE_VERSIONS = (3, 4, 5)
_ECDSA_P256_KEY = 2
_OPTIONS = {
    "vek": "--vek",
    "ca_chain": "--ca-chain",
    "product": "--product",
    "collateral": "--collateral",
}
_KIND_OPTIONS = {
    RATLS: ("collateral",),
    INTEL: ("collateral",),
    SNP: ("vek", "ca_chain", "product"),
}


def moment(text: str) -> datetime:
    """An argparse type: an ISO-8601 time (UTC unless it says otherwise)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _der_sequence(data: bytes) -> bool:
    """True if ``data`` is exactly one DER SEQUENCE (as a certificate is)."""
    if len(data) < 4 or data[0] != 0x30 or not 0x81 <= data[1] <= 0x84:
        return False
    count = data[1] & 0x7F
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big") == len(data)


def _binary_kind(data: bytes) -> str | None:
    if _der_sequence(data):
        return RATLS
    if data[:1] and data[0] in _COSE_SIGN1:
        return NITRO
    if len(data) == snp.REPORT_SIZE and 2 <= int.from_bytes(data[:4], "little") <= 0xFF:
        return SNP
    version, key_type = int.from_bytes(data[:2], "little"), int.from_bytes(data[2:4], "little")
    if len(data) >= 48 and version in _QUOTE_VERSIONS and key_type == _ECDSA_P256_KEY:
        return INTEL
    return None


def detect(data: bytes) -> tuple[str, bytes]:
    """``(kind, evidence bytes)`` of a file's content (PEM and base64 decoded)."""
    if kind := _binary_kind(data):
        return kind, data
    if pem := _PEM_CERTIFICATE.search(data):
        return RATLS, base64.b64decode(pem.group(1))
    if _BASE64.fullmatch(data):
        try:
            decoded = base64.b64decode(b"".join(data.split()), validate=True)
        except binascii.Error:
            decoded = b""
        if kind := _binary_kind(decoded):
            return kind, decoded
    raise UsageError(
        "not recognised as evidence: expected an X.509 certificate (RA-TLS), a COSE_Sign1 "
        "Nitro document, an SEV-SNP report or an Intel quote (raw, PEM or base64)"
    )


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}") from None


def _certificate(path: Path, option: str) -> x509.Certificate:
    data = _read(path, option)
    try:
        if b"-----BEGIN" in data:
            return pki.load_pem_certificates(data)[0]
        return pki.load_der_certificate(data)
    except (ValueError, pki.PkiError) as exc:
        raise UsageError(f"{option} {path}: not a certificate ({exc})") from None


class _Inputs:
    """What the options give beside the evidence: roots, collateral, the cache."""

    def __init__(self, args: argparse.Namespace, kind: str) -> None:
        for name, option in _OPTIONS.items():
            if getattr(args, name) is not None and name not in _KIND_OPTIONS.get(kind, ()):
                raise UsageError(f"{option} does not apply to an {kind}")
        if (args.vek is None) != (args.ca_chain is None):
            raise UsageError("--vek and --ca-chain go together")
        self.args = args
        self.now: datetime = args.at or datetime.now(UTC)
        self.root = _certificate(args.root, "--root") if args.root else None
        self.cache = self._cache(args)

    @staticmethod
    def _cache(args: argparse.Namespace) -> CollateralCache | None:
        """The configuration's cache (``--config``), with the cache options overriding it."""
        configured = CollateralCache.from_config(load_config(args.config)) if args.config else None
        if configured is None and not (args.cache_dir or args.pccs_url or args.kds_url):
            return None
        directory = args.cache_dir or (configured.directory if configured else DEFAULT_COLLATERAL)
        try:
            return CollateralCache(
                directory.expanduser(),
                pccs_url=args.pccs_url or (configured.pccs_url if configured else ""),
                kds_url=args.kds_url or (configured.kds_url if configured else ""),
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def intel_collateral(self, quote: bytes) -> Collateral | None:
        """``--collateral``, else the cache's for ``quote`` (None if neither is there)."""
        if self.args.collateral is not None:
            try:
                return Collateral.from_dcap_qvl_json(_read(self.args.collateral, "--collateral"))
            except CollateralError as exc:
                raise UsageError(f"--collateral {self.args.collateral}: {exc}") from None
        if self.cache is None:
            return None
        try:
            return self.cache.intel_for_quote(quote, now=self.now)
        except ValueError:
            return None  # a malformed quote: the verifier says what is wrong with it

    def snp_keys(self, report: bytes) -> tuple[bytes, bytes]:
        """``(VEK DER, CA chain PEM)`` from ``--vek``/``--ca-chain`` or the cache."""
        if self.args.vek is not None:
            vek = _certificate(self.args.vek, "--vek").public_bytes(Encoding.DER)
            return vek, _read(self.args.ca_chain, "--ca-chain")
        if self.cache is None:
            raise UsageError(
                "an SEV-SNP report needs --vek FILE --ca-chain FILE, or a collateral cache "
                "(--cache-dir, --kds-url)"
            )
        try:
            product = self.args.product or ""
            return self.cache.amd_for_report(report, now=self.now, product=product)
        except snp.SnpFormatError:
            return b"", b""  # the verifier says what is wrong with the report
        except ValueError as exc:
            raise UsageError(f"{exc}: give --product") from None


def _ratls(evidence: bytes, inputs: _Inputs) -> Appraisal:
    try:
        found = ratls.extract(evidence)
    except ratls.RatlsFormatError:
        found = None  # the verifier says what is wrong with the certificate
    quote = found.evidence if found is not None and found.tee in (SGX, TDX) else None
    return ratls.verify_certificate(
        evidence,
        now=inputs.now,
        intel_root=inputs.root or roots.intel_root(),
        nitro_root=inputs.root or roots.nitro_root(),
        collateral=inputs.intel_collateral(quote) if quote is not None else None,
    )


def _nitro(evidence: bytes, inputs: _Inputs) -> Appraisal:
    return nitro.verify_document(evidence, root=inputs.root or roots.nitro_root(), now=inputs.now)


def _snp(evidence: bytes, inputs: _Inputs) -> Appraisal:
    vek, ca_chain = inputs.snp_keys(evidence)
    pins = roots.AMD_ARK_FINGERPRINTS
    if inputs.root is not None:
        pins = dict.fromkeys(snp.PRODUCTS, roots.fingerprint(inputs.root))
    return snp.verify_report(
        evidence, vek=vek, ca_chain=ca_chain, now=inputs.now, ark_fingerprints=pins
    )


def _intel(evidence: bytes, inputs: _Inputs) -> Appraisal:
    return verify_quote(
        evidence,
        collateral=inputs.intel_collateral(evidence),
        root=inputs.root or roots.intel_root(),
        now=inputs.now,
    )


_APPRAISERS: dict[str, Callable[[bytes, _Inputs], Appraisal]] = {
    RATLS: _ratls,
    NITRO: _nitro,
    SNP: _snp,
    INTEL: _intel,
}


def _verify_evidence(args: argparse.Namespace, ctx: Context) -> None:
    kind, evidence = detect(_read(args.file, "FILE"))
    appraisal = _APPRAISERS[kind](evidence, _Inputs(args, kind))
    ctx.note(f"{args.file}: {kind}")
    ctx.emit(appraisal, "\n".join(appraisal.describe()))
    if not appraisal.valid:
        hint = ""
        if appraisal.reason == NO_COLLATERAL:
            hint = " (give --collateral FILE or a collateral cache)"
        raise CliError(f"evidence rejected: {appraisal.reason}{hint}")


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``verify-evidence``."""
    parser = add_command(
        sub,
        parent,
        "verify-evidence",
        _verify_evidence,
        "verify hardware attestation evidence (RA-TLS certificate, Nitro document, "
        "SEV-SNP report, SGX/TDX quote)",
    )
    parser.add_argument("file", metavar="FILE", type=Path, help="the evidence")
    parser.add_argument(
        "--collateral",
        type=Path,
        metavar="FILE",
        help="Intel collateral (dcap-qvl QuoteCollateralV3 JSON)",
    )
    parser.add_argument(
        "--vek", type=Path, metavar="FILE", help="SEV-SNP VCEK/VLEK certificate (DER or PEM)"
    )
    parser.add_argument(
        "--ca-chain", type=Path, metavar="FILE", help="SEV-SNP ASK/ASVK + ARK chain (PEM)"
    )
    parser.add_argument(
        "--product",
        metavar="NAME",
        help="SEV-SNP product line for the KDS (Milan, Genoa, Turin; v3+ reports say)",
    )
    parser.add_argument(
        "--root", type=Path, metavar="FILE", help="trust this root instead of the bundled one"
    )
    parser.add_argument(
        "--at", type=moment, metavar="TIME", help="verify at this ISO-8601 time (default: now)"
    )
    cache = parser.add_argument_group("collateral cache (used when one of these is given)")
    cache.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML config: its attestation.collateral_dir, pccs_url and kds_url",
    )
    cache.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help=f"cache directory (default {DEFAULT_COLLATERAL})",
    )
    cache.add_argument("--pccs-url", default="", metavar="URL", help="Intel PCS/PCCS base URL")
    cache.add_argument("--kds-url", default="", metavar="URL", help="AMD KDS base URL")
