"""COSE_Sign1 (RFC 9052) envelopes: decode, and check an ECDSA signature with raw ``r ‖ s``.

Only what attestation documents need: a tagged (18) or untagged
``[protected, unprotected, payload, signature]`` array with an embedded
payload, signed by ES256/ES384/ES512 over the ``Signature1`` Sig_structure
with empty external AAD. CBOR comes from ``cbor2`` through :func:`decode_cbor`,
which returns ``object`` so callers must check every type they use (inside a
tag, cbor2 gives arrays as tuples and maps as read-only mappings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from teaclave.attestation.pki import PkiError, raw_ecdsa

SIGN1_TAG = 18
ALG_HEADER = 1
ES256, ES384, ES512 = -7, -35, -36
_ALGORITHMS: Mapping[int, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm]] = {
    ES256: (ec.SECP256R1, hashes.SHA256()),
    ES384: (ec.SECP384R1, hashes.SHA384()),
    ES512: (ec.SECP521R1, hashes.SHA512()),
}


class CoseError(ValueError):
    """Bytes that are not well-formed CBOR or not a COSE_Sign1 structure."""


def decode_cbor(data: bytes) -> object:
    """One complete CBOR item from ``data``; CoseError on malformed or trailing bytes."""
    try:
        return cbor2.loads(data)
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise CoseError(f"malformed CBOR: {exc}") from None


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1: the protected header both as signed bytes and as a map."""

    protected: bytes
    headers: Mapping[object, object]
    unprotected: Mapping[object, object]
    payload: bytes
    signature: bytes

    @property
    def algorithm(self) -> object:
        """The protected ``alg`` header (an int for the ECDSA algorithms), or None."""
        return self.headers.get(ALG_HEADER)

    def to_be_signed(self) -> bytes:
        """The CBOR Sig_structure ``["Signature1", protected, h'', payload]``."""
        return cbor2.dumps(["Signature1", self.protected, b"", self.payload])

    def verify(self, key: ec.EllipticCurvePublicKey) -> None:
        """Check the signature with ``key``; CoseError saying why it does not verify."""
        algorithm = self.algorithm
        if not isinstance(algorithm, int) or algorithm not in _ALGORITHMS:
            raise CoseError(f"unsupported COSE algorithm {algorithm!r}")
        curve, digest = _ALGORITHMS[algorithm]
        if not isinstance(key.curve, curve):
            raise CoseError(f"algorithm {algorithm} needs a {curve.name} key, not {key.curve.name}")
        if len(self.signature) != 2 * ((key.curve.key_size + 7) // 8):
            raise CoseError(f"signature has {len(self.signature)} bytes, not r ‖ s")
        try:
            key.verify(raw_ecdsa(self.signature), self.to_be_signed(), ec.ECDSA(digest))
        except (InvalidSignature, PkiError):
            raise CoseError("signature does not verify") from None


def decode_sign1(data: bytes) -> Sign1:
    """A COSE_Sign1, tagged or not, with an embedded payload; CoseError otherwise."""
    item = decode_cbor(data)
    if isinstance(item, cbor2.CBORTag):
        if item.tag != SIGN1_TAG:
            raise CoseError(f"CBOR tag {item.tag} is not COSE_Sign1 ({SIGN1_TAG})")
        item = item.value
    if not isinstance(item, list | tuple) or len(item) != 4:
        raise CoseError("COSE_Sign1 is not an array of 4 items")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes):
        raise CoseError("COSE protected header is not a byte string")
    if not isinstance(unprotected, Mapping):
        raise CoseError("COSE unprotected header is not a map")
    if not isinstance(payload, bytes):
        raise CoseError("COSE payload is not an embedded byte string")
    if not isinstance(signature, bytes):
        raise CoseError("COSE signature is not a byte string")
    headers = decode_cbor(protected) if protected else {}
    if not isinstance(headers, Mapping):
        raise CoseError("COSE protected header is not a map")
    return Sign1(protected, headers, unprotected, payload, signature)
