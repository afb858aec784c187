"""Fuzzing the SNP and Nitro verifiers: any input gives an Appraisal or the parser's FormatError."""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snp_nitro_vectors import SNP_IDS, nitro_root, nitro_vector, snp_vector

from teaclave.attestation import nitro, snp
from teaclave.attestation.appraisal import NITRO, SEV_SNP, Appraisal

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
Mutations = list[tuple[int, int]]
mutations = st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=6)


def mutate(data: bytes, changes: Mutations, keep: int | None = None) -> bytes:
    """``data`` with bytes set at (position mod length), then cut to ``keep`` bytes."""
    out = bytearray(data)
    for position, value in changes:
        out[position % len(out)] = value
    return bytes(out[:keep])


def snp_appraisal(report: bytes, vek: bytes | None = None) -> Appraisal:
    vector = snp_vector(SNP_IDS[0])
    return snp.verify_report(report, vek=vek or vector.vek, ca_chain=vector.ca_chain, now=vector.at)


def check_parse_report(report: bytes) -> None:
    """Parsing returns a Report or raises SnpFormatError, nothing else."""
    with contextlib.suppress(snp.SnpFormatError):
        assert isinstance(snp.parse_report(report), snp.Report)


def check_parse_document(document: bytes) -> None:
    """Parsing returns a Document or raises NitroFormatError, nothing else."""
    with contextlib.suppress(nitro.NitroFormatError):
        assert isinstance(nitro.parse_document(document), nitro.Document)


@pytest.mark.timeout(30)
@FUZZ
@given(st.one_of(st.binary(max_size=2048), st.binary(min_size=1184, max_size=1184)))
def test_snp_arbitrary_bytes(report: bytes) -> None:
    check_parse_report(report)
    appraisal = snp_appraisal(report)
    assert (appraisal.tee, appraisal.valid) == (SEV_SNP, False)
    assert appraisal.reason


@pytest.mark.timeout(30)
@FUZZ
@given(st.sampled_from(SNP_IDS), mutations, st.sampled_from(["report", "vek", "ca_chain"]))
def test_snp_mutated_vectors(vector_id: str, changes: Mutations, target: str) -> None:
    vector = snp_vector(vector_id)
    inputs = {"report": vector.report, "vek": vector.vek, "ca_chain": vector.ca_chain}
    inputs[target] = mutate(inputs[target], changes)
    report = inputs.pop("report")
    check_parse_report(report)
    appraisal = snp.verify_report(report, **inputs, now=vector.at)
    assert appraisal.tee == SEV_SNP
    if report == vector.report and inputs["vek"] == vector.vek and target != "ca_chain":
        assert appraisal.valid, appraisal.reason
    elif target == "report":
        assert not appraisal.valid  # every report byte is signed or must be zero
    assert appraisal.valid or appraisal.reason


def nitro_appraisal(document: bytes) -> Appraisal:
    return nitro.verify_document(document, root=nitro_root(), now=nitro_vector("nitrite/prod").at)


@pytest.mark.timeout(30)
@FUZZ
@given(st.binary(max_size=4096))
def test_nitro_arbitrary_bytes(document: bytes) -> None:
    check_parse_document(document)
    appraisal = nitro_appraisal(document)
    assert (appraisal.tee, appraisal.valid) == (NITRO, False)
    assert appraisal.reason


@pytest.mark.timeout(30)
@FUZZ
@given(
    st.sampled_from(["nitrite/prod", "nitrite/debug", "evervault/ga"]),
    mutations,
    st.one_of(st.none(), st.integers(0, 8000)),
)
def test_nitro_mutated_vectors(vector_id: str, changes: Mutations, keep: int | None) -> None:
    vector = nitro_vector(vector_id)
    document = mutate(vector.document, changes, keep)
    check_parse_document(document)
    appraisal = nitro.verify_document(document, root=vector.root, now=vector.at)
    assert appraisal.tee == NITRO
    assert appraisal.valid == (document == vector.document), appraisal.reason


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.binary(max_size=64)
    | st.text(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.integers(-40, 40) | st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "user_data")


@pytest.mark.timeout(30)
@FUZZ
@given(
    st.dictionaries(st.sampled_from(FIELDS), cbor_values, max_size=len(FIELDS)),
    st.sampled_from([b"\xa1\x01\x38\x22", b"", b"\xa0", b"\xa1\x01\x26"]),
    st.booleans(),
)
def test_nitro_structured_payloads(fields: dict[str, Any], protected: bytes, tag: bool) -> None:
    real = cbor2.loads(nitro_vector("nitrite/prod").document)
    payload = cbor2.dumps({**cbor2.loads(real[2]), **fields})
    envelope: Any = [protected, {}, payload, real[3]]
    document = cbor2.dumps(cbor2.CBORTag(18, envelope) if tag else envelope)
    check_parse_document(document)
    appraisal = nitro_appraisal(document)
    assert appraisal.tee == NITRO
    assert appraisal.valid == (payload == real[2] and protected == real[0]), appraisal.reason
