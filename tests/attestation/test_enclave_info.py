"""Auditor-signed enclave info: m-of-n thresholds, duplicates, tampering, malformed documents."""

from __future__ import annotations

import contextlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from teaclave.attestation import enclave_info
from teaclave.attestation.enclave_info import (
    EnclaveInfo,
    EnclaveInfoError,
    Signature,
    decode,
    encode,
    sign,
    verify,
)

INFO = EnclaveInfo(
    measurements={
        "frontend": frozenset({b"\x01" * 32, b"\x02" * 32}),
        "scheduler": frozenset({b"\x03" * 48}),
    },
    release="v1.2.3",
)
KEYS: dict[str, enclave_info.SigningKey] = {
    "alice": ed25519.Ed25519PrivateKey.generate(),
    "bob": ec.generate_private_key(ec.SECP256R1()),
    "carol": ec.generate_private_key(ec.SECP384R1()),
}
AUDITORS = {name: key.public_key() for name, key in KEYS.items()}


def signed(*names: str, info: EnclaveInfo = INFO) -> bytes:
    return encode(info, [sign(info, KEYS[name], name) for name in names])


def document(data: bytes) -> dict:
    return json.loads(data)


@pytest.mark.parametrize(
    ("names", "threshold"),
    [(("alice",), 1), (("alice", "bob"), 2), (("carol", "bob", "alice"), 3), (("bob", "carol"), 2)],
)
def test_threshold_met_with_mixed_key_types(names: tuple[str, ...], threshold: int) -> None:
    assert verify(signed(*names), auditors=AUDITORS, threshold=threshold) == INFO


@pytest.mark.parametrize(("names", "threshold"), [((), 1), (("alice",), 2), (("bob", "carol"), 3)])
def test_threshold_not_met(names: tuple[str, ...], threshold: int) -> None:
    with pytest.raises(EnclaveInfoError, match=f"has {len(names)} of the {threshold} required"):
        verify(signed(*names), auditors=AUDITORS, threshold=threshold)


def test_zero_signatures_name_nobody() -> None:
    with pytest.raises(EnclaveInfoError, match=r"0 of the 1 required .*\(valid: nobody\)"):
        verify(encode(INFO, []), auditors=AUDITORS, threshold=1)


@pytest.mark.parametrize("threshold", [0, -1])
def test_threshold_below_one_is_a_configuration_error(threshold: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        verify(signed("alice", "bob", "carol"), auditors=AUDITORS, threshold=threshold)


def test_unreachable_threshold_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="exceeds the 3 distinct auditor keys"):
        verify(signed("alice"), auditors=AUDITORS, threshold=4)
    shared = {"alice": AUDITORS["alice"], "alias": AUDITORS["alice"]}
    with pytest.raises(ValueError, match="exceeds the 1 distinct"):
        verify(signed("alice"), auditors=shared, threshold=2)


def test_duplicate_signatures_count_once() -> None:
    same_name = encode(INFO, [sign(INFO, KEYS["alice"], "alice")] * 3)
    with pytest.raises(EnclaveInfoError, match="has 1 of the 2"):
        verify(same_name, auditors=AUDITORS, threshold=2)
    # two auditor names with one key: signing as both still counts once
    auditors = {**AUDITORS, "alias": AUDITORS["alice"]}
    same_key = encode(INFO, [sign(INFO, KEYS["alice"], n) for n in ("alice", "alias")])
    with pytest.raises(EnclaveInfoError, match=r"has 1 of the 2 .*\(valid: alice\)"):
        verify(same_key, auditors=auditors, threshold=2)
    assert verify(same_key, auditors=auditors, threshold=1) == INFO


def test_unknown_signers_are_ignored() -> None:
    mallory = ed25519.Ed25519PrivateKey.generate()
    data = encode(INFO, [sign(INFO, mallory, "mallory"), sign(INFO, KEYS["bob"], "bob")])
    assert verify(data, auditors=AUDITORS, threshold=1) == INFO
    with pytest.raises(EnclaveInfoError, match=r"1 of the 2 .*\(valid: bob\)"):
        verify(data, auditors=AUDITORS, threshold=2)


def test_tampered_body_fails_loudly() -> None:
    data = document(signed("alice", "bob"))
    data["enclave_info"]["release"] = "v6.6.6"
    with pytest.raises(EnclaveInfoError, match=r"signature of auditor 'alice' .* does not verify"):
        verify(json.dumps(data).encode(), auditors=AUDITORS, threshold=1)
    data = document(signed("bob"))
    data["enclave_info"]["measurements"]["frontend"].append("ff" * 32)
    data["enclave_info"]["measurements"]["frontend"].sort()
    with pytest.raises(EnclaveInfoError, match=r"'bob' .* does not verify"):
        verify(json.dumps(data).encode(), auditors=AUDITORS, threshold=1)


def test_wrong_key_and_wrong_algorithm() -> None:
    forged = sign(INFO, ec.generate_private_key(ec.SECP256R1()), "bob")
    with pytest.raises(EnclaveInfoError, match="'bob' \\(ecdsa-p256-sha256\\) does not verify"):
        verify(encode(INFO, [forged]), auditors=AUDITORS, threshold=1)
    relabelled = Signature("carol", "ed25519", sign(INFO, KEYS["carol"], "carol").value)
    with pytest.raises(EnclaveInfoError, match="'carol' \\(ed25519\\) does not verify"):
        verify(encode(INFO, [relabelled]), auditors=AUDITORS, threshold=1)


def test_signature_covers_the_domain_prefix() -> None:
    raw = KEYS["alice"]
    assert isinstance(raw, ed25519.Ed25519PrivateKey)
    undomained = Signature(
        "alice", "ed25519", raw.sign(INFO.signed_bytes()[len(enclave_info.DOMAIN) :])
    )
    with pytest.raises(EnclaveInfoError, match="does not verify"):
        verify(encode(INFO, [undomained]), auditors=AUDITORS, threshold=1)


def test_round_trip_and_canonical_form() -> None:
    data = signed("alice", "carol")
    info, signatures = decode(data)
    assert info == INFO
    assert [s.signer for s in signatures] == ["alice", "carol"]
    assert encode(info, signatures) == data
    assert b" " not in data
    # a re-serialised (non-canonical) document still verifies: the body is re-canonicalised
    pretty = json.dumps(document(data), indent=2).encode()
    assert verify(pretty, auditors=AUDITORS, threshold=2) == INFO


def test_keys_load_from_pem() -> None:
    for name, key in KEYS.items():
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        loaded = enclave_info.load_private_key(private_pem)
        auditors = {name: enclave_info.load_public_key(public_pem)}
        data = encode(INFO, [sign(INFO, loaded, name)])
        assert verify(data, auditors=auditors, threshold=1) == INFO


def test_unsupported_keys_are_refused() -> None:
    p521 = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(ValueError, match="unsupported ECDSA curve"):
        sign(INFO, p521, "dave")
    with pytest.raises(ValueError, match="unsupported ECDSA curve"):
        verify(signed("alice"), auditors={"dave": p521.public_key()}, threshold=1)
    pem = p521.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="unsupported ECDSA curve"):
        enclave_info.load_public_key(pem)
    rsa_pem = (
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="Ed25519 or ECDSA"):
        enclave_info.load_public_key(rsa_pem)


def _mutated(change: str) -> bytes:
    data = document(signed("alice"))
    body, sig = data["enclave_info"], data["signatures"][0]
    if change == "extra top-level key":
        data["extra"] = 1
    elif change == "missing signatures":
        del data["signatures"]
    elif change == "extra body key":
        body["note"] = "unsigned"
    elif change == "version 2":
        body["version"] = 2
    elif change == "version 1.0":
        body["version"] = 1.0
    elif change == "version true":
        body["version"] = True
    elif change == "empty release":
        body["release"] = ""
    elif change == "measurements list":
        body["measurements"] = []
    elif change == "measurement not hex":
        body["measurements"]["frontend"] = ["zz"]
    elif change == "uppercase hex":
        body["measurements"]["frontend"] = ["AB" * 32]
    elif change == "spaced hex":
        body["measurements"]["frontend"] = ["ab cd"]
    elif change == "odd hex":
        body["measurements"]["frontend"] = ["abc"]
    elif change == "long measurement":
        body["measurements"]["frontend"] = ["00" * 65]
    elif change == "repeated measurement":
        body["measurements"]["frontend"] = ["00" * 32, "00" * 32]
    elif change == "measurements not list":
        body["measurements"]["frontend"] = "00"
    elif change == "empty service":
        body["measurements"][""] = []
    elif change == "signatures object":
        data["signatures"] = {}
    elif change == "signature extra key":
        sig["when"] = "now"
    elif change == "signature not hex":
        sig["signature"] = "xyz"
    elif change == "signer number":
        sig["signer"] = 7
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "change",
    [
        "extra top-level key",
        "missing signatures",
        "extra body key",
        "version 2",
        "version 1.0",
        "version true",
        "empty release",
        "measurements list",
        "measurement not hex",
        "uppercase hex",
        "spaced hex",
        "odd hex",
        "long measurement",
        "repeated measurement",
        "measurements not list",
        "empty service",
        "signatures object",
        "signature extra key",
        "signature not hex",
        "signer number",
    ],
)
def test_malformed_documents(change: str) -> None:
    with pytest.raises(EnclaveInfoError, match="malformed enclave info"):
        verify(_mutated(change), auditors=AUDITORS, threshold=1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"null",
        b"[]",
        b'{"enclave_info": {}, "signatures": []}',
        b'{"enclave_info": 1, "enclave_info": 2, "signatures": []}',
        b"[" * 100_000,
        b"{" + b" " * enclave_info.MAX_DOCUMENT_BYTES + b"}",
    ],
)
def test_garbage_documents(data: bytes) -> None:
    with pytest.raises(EnclaveInfoError, match="malformed enclave info"):
        decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_decode_bytes(data: bytes) -> None:
    with contextlib.suppress(EnclaveInfoError):
        decode(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    body=st.dictionaries(st.sampled_from(["measurements", "release", "version"]), JSON),
    signatures=JSON,
)
def test_fuzz_decode_structures(body: dict, signatures: object) -> None:
    data = json.dumps({"enclave_info": body, "signatures": signatures}).encode()
    with contextlib.suppress(EnclaveInfoError):
        decode(data)
