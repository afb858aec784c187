"""Intel DCAP collateral: the signed TCB info and QE identity, the CRLs, and their loaders.

Intel signs the *exact bytes* of the inner JSON object of a PCS response
(``{"tcbInfo":<signed>,"signature":"<hex r‖s>"}``), so the signed text is kept
verbatim, sliced out of the response without re-serialising. Loaders read the
dcap-qvl ``QuoteCollateralV3`` JSON and raw PCS responses with PEM issuer
chains and PEM/DER CRLs; they raise :class:`CollateralError` on malformed input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from teaclave.attestation.pki import PkiError, load_pem_certificates

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"


class CollateralError(ValueError):
    """Collateral that cannot be loaded; the message says which part and why."""


@dataclass(frozen=True)
class SignedDocument:
    """A signed collateral document: the exact signed JSON text, raw r‖s, signer chain."""

    text: str
    signature: bytes
    issuer_chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class Collateral:
    """What a verifier needs besides the quote; any part may be missing (then it is reported)."""

    tcb_info: SignedDocument | None = None
    qe_identity: SignedDocument | None = None
    pck_crl: x509.CertificateRevocationList | None = None
    pck_crl_issuer_chain: tuple[x509.Certificate, ...] = ()
    root_ca_crl: x509.CertificateRevocationList | None = None

    @classmethod
    def from_dcap_qvl_json(cls, text: str | bytes) -> Collateral:
        """Collateral from dcap-qvl's ``QuoteCollateralV3`` JSON (hex CRLs and signatures)."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CollateralError(f"collateral JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise CollateralError("collateral JSON is not an object")

        def signed(prefix: str) -> SignedDocument | None:
            if not doc.get(prefix):
                return None
            return SignedDocument(
                _string(doc, prefix),
                _hex(doc, f"{prefix}_signature"),
                tuple(load_chain(_string(doc, f"{prefix}_issuer_chain").encode())),
            )

        def crl(key: str) -> x509.CertificateRevocationList | None:
            return load_crl(_hex(doc, key)) if doc.get(key) else None

        chain = doc.get("pck_crl_issuer_chain")
        return cls(
            tcb_info=signed("tcb_info"),
            qe_identity=signed("qe_identity"),
            pck_crl=crl("pck_crl"),
            pck_crl_issuer_chain=tuple(load_chain(chain.encode()))
            if isinstance(chain, str)
            else (),
            root_ca_crl=crl("root_ca_crl"),
        )

    @classmethod
    def from_pcs(
        cls,
        *,
        tcb_info: bytes | None = None,
        tcb_info_issuer_chain: bytes = b"",
        qe_identity: bytes | None = None,
        qe_identity_issuer_chain: bytes = b"",
        pck_crl: bytes | None = None,
        pck_crl_issuer_chain: bytes = b"",
        root_ca_crl: bytes | None = None,
    ) -> Collateral:
        """Collateral from raw PCS response bodies, PEM issuer chains and PEM/DER CRLs."""
        return cls(
            tcb_info=_pcs_document(tcb_info, "tcbInfo", tcb_info_issuer_chain),
            qe_identity=_pcs_document(qe_identity, "enclaveIdentity", qe_identity_issuer_chain),
            pck_crl=load_crl(pck_crl) if pck_crl else None,
            pck_crl_issuer_chain=tuple(load_chain(pck_crl_issuer_chain)),
            root_ca_crl=load_crl(root_ca_crl) if root_ca_crl else None,
        )


def load_chain(pem: bytes) -> list[x509.Certificate]:
    """PEM certificates (a chain), fully parsed now; an empty input is an empty chain.

    ``cryptography`` parses names, extensions and keys lazily; touching them
    here turns a malformed certificate into a CollateralError, not a later crash.
    """
    if not pem.strip(b"\0 \t\r\n"):
        return []
    try:
        certs = load_pem_certificates(pem)
        for cert in certs:
            _ = cert.subject, cert.issuer, cert.extensions, cert.public_key()
    except (PkiError, ValueError, UnsupportedAlgorithm) as exc:
        raise CollateralError(f"malformed certificate: {exc}") from None
    return certs


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL in PEM or DER."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise CollateralError(f"malformed CRL: {exc}") from None


def signed_member(response: str, key: str) -> str:
    """The exact text of top-level member ``key`` of the JSON object ``response``."""
    try:
        pos = _skip(response, 0)
        if response[pos : pos + 1] != "{":
            raise CollateralError("PCS response is not a JSON object")
        pos = _skip(response, pos + 1)
        while response[pos : pos + 1] != "}":
            name, pos = _DECODER.raw_decode(response, pos)
            pos = _skip(response, pos)
            if response[pos : pos + 1] != ":":
                raise CollateralError(f"PCS response: ':' expected at {pos}")
            start = _skip(response, pos + 1)
            _, end = _DECODER.raw_decode(response, start)
            if name == key:
                return response[start:end]
            pos = _skip(response, end)
            if response[pos : pos + 1] == ",":
                pos = _skip(response, pos + 1)
    except ValueError as exc:
        raise CollateralError(f"PCS response: {exc}") from None
    raise CollateralError(f"PCS response has no {key!r} member")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _pcs_document(response: bytes | None, key: str, chain: bytes) -> SignedDocument | None:
    if response is None:
        return None
    try:
        text = response.decode()
        doc = json.loads(text)
    except ValueError as exc:
        raise CollateralError(f"PCS {key} response: {exc}") from None
    if not isinstance(doc, dict):
        raise CollateralError(f"PCS {key} response is not a JSON object")
    return SignedDocument(
        signed_member(text, key), _hex(doc, "signature"), tuple(load_chain(chain))
    )


def _string(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise CollateralError(f"collateral field {key!r} is not a string")
    return value


def _hex(doc: dict[str, Any], key: str) -> bytes:
    try:
        return bytes.fromhex(_string(doc, key))
    except ValueError:
        raise CollateralError(f"collateral field {key!r} is not hex") from None
