"""Fuzzing the collateral parsers: arbitrary and mutated JSON, CRLs and DER never crash them."""

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intel_vectors import VECTORS

from teaclave.attestation import der
from teaclave.attestation.intel import Collateral
from teaclave.attestation.intel.collateral import CollateralError, load_crl
from teaclave.attestation.intel.tcb import TcbError, parse_qe_identity, parse_tcb_info

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COLLATERAL = (VECTORS / "dcap-qvl" / "sgx_quote_collateral.json").read_text()
JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
).map(json.dumps)


@FAST
@given(st.text(max_size=600) | JSON_TEXT)
def test_documents_are_parsed_or_refused(text: str) -> None:
    for parse in (parse_tcb_info, parse_qe_identity):
        with contextlib.suppress(TcbError):
            parse(text)
    with contextlib.suppress(CollateralError):
        Collateral.from_dcap_qvl_json(text)


@FAST
@given(st.lists(st.tuples(st.integers(0, 1 << 16), st.characters()), min_size=1, max_size=6))
def test_mutated_vector_collateral_is_parsed_or_refused(edits: list[tuple[int, str]]) -> None:
    text = list(COLLATERAL)
    for position, char in edits:
        text[position % len(text)] = char
    with contextlib.suppress(CollateralError):
        Collateral.from_dcap_qvl_json("".join(text))


@FAST
@given(st.binary(max_size=512))
def test_crls_and_der_are_parsed_or_refused(data: bytes) -> None:
    with contextlib.suppress(CollateralError):
        load_crl(data)
    try:
        for _, whole, content in der.elements(data):
            assert content in whole
    except der.DerError:
        pass
