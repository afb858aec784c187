"""Intel DCAP verifier on the public vectors: MANIFEST verdicts, dcap-qvl agreement, parsing."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

import dcap_qvl
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from intel_vectors import (
    DCAP_QVL_IDS,
    INTEL_IDS,
    VECTORS,
    at,
    collateral,
    manifest,
    quote,
    read,
    root,
)

from teaclave.attestation.appraisal import Appraisal
from teaclave.attestation.intel import (
    NO_COLLATERAL,
    Collateral,
    parse_event_log,
    parse_quote,
    replay_rtmrs,
    verify_quote,
)
from teaclave.attestation.intel.collateral import load_crl, signed_member
from teaclave.attestation.intel.quote import EnclaveReport, TdReport


def appraise(vid: str, **changes: Any) -> Appraisal:
    entry = manifest()[vid]
    kwargs: dict[str, Any] = {
        "collateral": collateral(entry),
        "root": root(entry),
        "now": at(entry),
    }
    return verify_quote(quote(entry), **{**kwargs, **changes})


def _check_expectation(key: str, want: Any, a: Appraisal, entry: dict[str, Any]) -> None:
    details = a.details
    raw = quote(entry)
    match key:
        case "valid" | "debug":
            assert getattr(a, key) is want
        case "platform_status" | "qe_status" | "fmspc" | "tdx_module" | "collateral_valid":
            assert details[key] == want
        case "sept_ve_disable":
            assert details[key] is want
        case "final_status":
            assert a.tcb_status == want
        case "advisories":
            assert list(a.advisories) == want
        case "mrenclave" | "mrsigner" | "mrtd":
            assert a.measurements[key] == want
        case "reason":  # "what (why)": both parts must be in ours
            what, _, why = want.partition(" (")
            assert what in a.reason
            assert why.rstrip(")") in a.reason
        case "report_data_ascii_prefix":
            assert a.report_data.startswith(want.encode())
        case "signatures_valid":
            assert details["quote_signatures_valid"] is want
            assert details["pck_chain_valid"] is want
        case "trailing_bytes":
            assert details["trailing_bytes"] == want
        case "trailing_zero_bytes_after_signature_data" | "padding_zero_bytes":
            assert details["trailing_bytes"] == want
            assert raw[-want:] == bytes(want)
        case "rtmr_replay_matches":
            replayed = replay_rtmrs(read(entry["event_log"]))
            matches = [r.hex() == a.measurements[f"rtmr{i}"] for i, r in enumerate(replayed)]
            assert matches == want
        case "events":
            assert len(parse_event_log(read(entry["event_log"]))) == want
        case "report_data_equals_nonce":
            assert (a.report_data == read(entry["nonce"])) is want
        case "note":
            pass
        case _:
            pytest.fail(f"unchecked MANIFEST expectation {key!r}")


@pytest.mark.parametrize("vid", INTEL_IDS)
def test_manifest_verdict(vid: str) -> None:
    entry = manifest()[vid]
    a = appraise(vid)
    assert a.tee == entry["tee"]
    assert a.details["quote_version"] == entry["quote_version"]
    if "body_type" in entry:
        assert a.details["body_type"] == entry["body_type"]
    for key, want in entry["expect"].items():
        _check_expectation(key, want, a, entry)
    if "valid" not in entry["expect"]:  # partial collateral: must say what is missing
        assert not a.valid
        assert a.reason.startswith(("collateral incomplete: no ", NO_COLLATERAL))


def test_partial_collateral_reasons() -> None:
    v5, tdx6 = appraise("go-tdx-guest/v5"), appraise("trustee/tdx6")
    assert v5.reason == "collateral incomplete: no QE identity, no PCK CRL, no root CA CRL"
    assert (v5.tcb_status, v5.details["collateral_valid"]) == ("UpToDate", False)
    assert tdx6.reason == "collateral incomplete: no PCK CRL, no root CA CRL"
    # dcap-qvl's root CA CRL (2025-03-20 .. 2026-04-03) covers tdx6's T: only the PCK CRL lacks.
    entry = manifest()["trustee/tdx6"]
    full = collateral(entry)
    assert full is not None
    root_crl = Collateral.from_dcap_qvl_json(read("dcap-qvl/tdx_quote_collateral.json")).root_ca_crl
    with_root_crl = dataclasses.replace(full, root_ca_crl=root_crl)
    a = appraise("trustee/tdx6", collateral=with_root_crl)
    assert a.reason == "collateral incomplete: no PCK CRL"
    assert a.tcb_status == "OutOfDate"


def test_v5_with_the_manifest_chain_is_expired() -> None:
    """The MANIFEST's 2023 TCB signing certificate expired before the 2026 TCB info was issued."""
    entry = manifest()["go-tdx-guest/v5"]
    stale = Collateral.from_pcs(
        tcb_info=read(entry["tcb_info"]),
        tcb_info_issuer_chain=read("go-tdx-guest/tcbinfo_issuer_chain.pem"),
    )
    a = appraise("go-tdx-guest/v5", collateral=stale)
    assert a.reason.startswith("TCB info issuer chain: certificate 'Intel SGX TCB Signing' expired")


@pytest.mark.parametrize("vid", INTEL_IDS)
def test_without_collateral_only_signatures_and_chain(vid: str) -> None:
    a = appraise(vid, collateral=None)
    assert (a.valid, a.reason) == (False, NO_COLLATERAL)
    assert a.details["quote_signatures_valid"] is True
    assert a.details["pck_chain_valid"] is True
    assert a.signer == f"Intel SGX PCK certificate (FMSPC {a.details['fmspc']})"
    assert a.tcb_status == ""


def _dcap_qvl(vid: str, now: datetime) -> tuple[bool, str, list[str]]:
    entry = manifest()[vid]
    theirs = dcap_qvl.QuoteCollateralV3.from_json(read(entry["collateral"]).decode())
    try:
        report = dcap_qvl.verify(quote(entry), theirs, int(now.timestamp()))
    except ValueError as exc:
        return False, str(exc), []
    return True, report.status, list(report.advisory_ids)


@pytest.mark.parametrize("vid", DCAP_QVL_IDS)
def test_agrees_with_dcap_qvl(vid: str) -> None:
    ours = appraise(vid)
    valid, status, advisories = _dcap_qvl(vid, at(manifest()[vid]))
    assert ours.valid is valid
    if valid:
        assert (ours.tcb_status, list(ours.advisories)) == (status, advisories)
    else:
        assert "No matching TCB level" in status
        assert "no matching TCB level" in ours.reason


@pytest.mark.parametrize("vid", DCAP_QVL_IDS)
def test_agrees_with_dcap_qvl_outside_the_window(vid: str) -> None:
    entry = manifest()[vid]
    late = datetime.fromisoformat(entry["window"][1]).replace(year=2030)
    ours = appraise(vid, now=late)
    assert not ours.valid
    assert "expired" in ours.reason
    assert _dcap_qvl(vid, late)[0] is False


def test_parse_sgx_v3() -> None:
    q = parse_quote(quote(manifest()["dcap-qvl/sgx"]))
    assert (q.tee, q.header.version, q.body_type) == ("sgx", 3, 1)
    assert isinstance(q.body, EnclaveReport)
    assert len(q.signed) == 432
    assert q.certification.cert_type == 5
    assert len(q.certification.pck_chain()) == 3
    assert q.certification.qe_report.isv_svn == 10


@pytest.mark.parametrize(
    ("vid", "version", "body_type", "signed"),
    [
        ("dcap-qvl/tdx", 4, 2, 632),
        ("dcap-qvl/tdx-outdated", 5, 3, 702),
        ("go-tdx-guest/v5", 5, 3, 702),
        ("go-tdx-guest/spr-e4", 4, 2, 632),
    ],
)
def test_parse_tdx(vid: str, version: int, body_type: int, signed: int) -> None:
    q = parse_quote(quote(manifest()[vid]))
    assert (q.tee, q.header.version, q.body_type, len(q.signed)) == (
        "tdx",
        version,
        body_type,
        signed,
    )
    assert isinstance(q.body, TdReport)
    assert len(q.body.tee_tcb_svn2) == (16 if body_type == 3 else 0)


def test_measurement_names() -> None:
    sgx, tdx = appraise("dcap-qvl/sgx"), appraise("dcap-qvl/tdx")
    assert set(sgx.measurements) == {"mrenclave", "mrsigner", "isv_prod_id", "isv_svn"}
    assert set(tdx.measurements) == {
        "mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_config_id", "mr_owner", "mr_owner_config",
    }  # fmt: skip
    assert all(isinstance(value, str) for value in [*sgx.measurements.values()])
    assert len(sgx.report_data) == len(tdx.report_data) == 64
    assert sgx.describe()[0] == "sgx: VALID"


def test_pcs_loader_keeps_the_signed_bytes() -> None:
    text = read("trustee/tcbInfo.json").decode().rstrip("\n")
    inner = signed_member(text, "tcbInfo")
    assert (
        text
        == '{"tcbInfo":' + inner + ',"signature":' + json.dumps(json.loads(text)["signature"]) + "}"
    )
    spaced = text.replace('{"tcbInfo":', '{ "tcbInfo" :  ', 1)
    assert signed_member(spaced, "tcbInfo") == inner


def test_dcap_qvl_and_pcs_loaders_agree() -> None:
    """The same collateral as dcap-qvl JSON and as PCS bodies + PEM/DER files loads equal."""
    doc = json.loads(read("dcap-qvl/tdx_quote_collateral.json"))

    def body(key: str, prefix: str) -> bytes:
        return f'{{"{key}":{doc[prefix]},"signature":"{doc[prefix + "_signature"]}"}}'.encode()

    pck_crl_pem = load_crl(bytes.fromhex(doc["pck_crl"])).public_bytes(Encoding.PEM)
    via_pcs = Collateral.from_pcs(
        tcb_info=body("tcbInfo", "tcb_info"),
        tcb_info_issuer_chain=doc["tcb_info_issuer_chain"].encode(),
        qe_identity=body("enclaveIdentity", "qe_identity"),
        qe_identity_issuer_chain=doc["qe_identity_issuer_chain"].encode(),
        pck_crl=pck_crl_pem,
        pck_crl_issuer_chain=doc["pck_crl_issuer_chain"].encode(),
        root_ca_crl=bytes.fromhex(doc["root_ca_crl"]),
    )
    assert via_pcs == Collateral.from_dcap_qvl_json(json.dumps(doc))
    assert via_pcs.tcb_info is not None
    assert len(via_pcs.tcb_info.issuer_chain) == 2


def test_event_log_replay_matches_the_quote() -> None:
    entry = manifest()["go-tdx-guest/cos-113-ccel"]
    body = parse_quote(quote(entry)).body
    assert isinstance(body, TdReport)
    assert replay_rtmrs(read(entry["event_log"])) == list(body.rtmrs)
    assert (VECTORS / entry["acpi_ccel"]).read_bytes()[:4] == b"CCEL"
