"""``teaclave verify-evidence``: every kind of vector evidence at its MANIFEST time."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from teaclave_fixtures import VECTORS

from teaclave.cli.evidence import INTEL, NITRO, RATLS, SNP, detect
from teaclave.cli.main import main
from teaclave.transport.collateral import CollateralCache

SGX_T = "2025-07-01T00:00:00Z"
SNP_T = "2025-06-01T00:00:00Z"
MILAN_CHAIN = "trustee/milan_ask_ark_asvk.pem"


def v(name: str) -> str:
    return str(VECTORS / name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["verify-evidence", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def manifest_time(vector_id: str) -> str:
    entries = json.loads((VECTORS / "MANIFEST.json").read_text())["vectors"]
    return str(next(entry["T"] for entry in entries if entry["id"] == vector_id))


VALID = {
    "dcap-qvl/sgx": (
        [v("dcap-qvl/sgx_quote"), "--collateral", v("dcap-qvl/sgx_quote_collateral.json")],
        [
            "sgx: VALID",
            "TCB status: ConfigurationAndSWHardeningNeeded (INTEL-SA-00289, INTEL-SA-00615)",
            "debug: no",
            "mrenclave: 33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
            "fmspc: 00a067110000",
        ],
    ),
    "dcap-qvl/tdx": (
        [v("dcap-qvl/tdx_quote"), "--collateral", v("dcap-qvl/tdx_quote_collateral.json")],
        [
            "tdx: VALID",
            "TCB status: UpToDate",
            "mrtd: 91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
            "de03ae6dc5f87f27428b2538873118b7",
        ],
    ),
    "trustee/milan-vcek": (
        [
            v("trustee/test-report.bin"),
            *("--vek", v("trustee/test-vcek.der"), "--ca-chain", v(MILAN_CHAIN)),
        ],
        ["sev-snp: VALID", "signed by: AMD VCEK (Milan)", "policy: 0x3001f"],
    ),
    "trustee/milan-vlek": (
        [
            v("trustee/test-vlek-report.bin"),
            *("--vek", v("trustee/test-vlek.der"), "--ca-chain", v(MILAN_CHAIN)),
        ],
        ["sev-snp: VALID", "signed by: AMD VLEK (Milan)", "chip_id_zero: True"],
    ),
    "nitrite/prod": (
        [v("nitrite-blocky/nitro_attestation.b64")],
        ["nitro: VALID", "debug: no", "module_id: i-0a22e5c5f24d22174-enc0191cceb4289903f"],
    ),
    "nitrite/debug": (
        [v("nitrite-blocky/nitro_attestation_debug.b64")],
        ["nitro: VALID", "debug: YES (no confidentiality)"],
    ),
    "evervault/non-debug-cert": (
        [
            v(
                "evervault-attestation-doc-validation/"
                "non-debug-cert-containing-attestation-document-18-1-23.pem"
            )
        ],
        [
            "nitro: VALID",
            "pcr0: d265a83faa7b4fa0d73b82b6d06253e894445922937d0ee5a74fe4891da98176"
            "11a71e71b98e5329232902de3cf419af",
            "ratls_format: nitro",
        ],
    ),
    "evervault/ga": (
        [v("evervault-attestation-doc-validation/valid-attestation-doc-base64")],
        ["nitro: VALID", "debug: YES (no confidentiality)"],
    ),
}


@pytest.mark.parametrize("vector_id", VALID)
def test_valid_evidence(capsys: pytest.CaptureFixture[str], vector_id: str) -> None:
    argv, expected = VALID[vector_id]
    code, out, err = run(capsys, *argv, "--at", manifest_time(vector_id))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == expected[0]
    for line in expected[1:]:
        assert line in lines


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    argv, _ = VALID["trustee/milan-vcek"]
    code, out, _ = run(capsys, *argv, "--at", SNP_T, "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["tee"], data["valid"], data["signer"]) == ("sev-snp", True, "AMD VCEK (Milan)")
    assert data["details"]["reported_tcb"] == "0x7308000000000003"


def tampered(tmp_path: Path, name: str, offset: int, *, b64: bool = False) -> str:
    data = bytearray((VECTORS / name).read_bytes())
    if b64:
        data = bytearray(base64.b64decode(data))
    data[offset] ^= 0x01
    path = tmp_path / "tampered"
    path.write_bytes(bytes(data))
    return str(path)


@pytest.mark.parametrize(
    ("vector_id", "reason"),
    [
        ("dcap-qvl/sgx", "quote signature is invalid"),
        ("trustee/milan-vcek", "report signature does not verify with the VCEK"),
        ("nitrite/prod", "COSE_Sign1 signature does not verify"),
    ],
)
def test_tampered_evidence_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], vector_id: str, reason: str
) -> None:
    argv, expected = VALID[vector_id]
    b64 = argv[0].endswith(".b64")
    argv = [tampered(tmp_path, argv[0], 0x90, b64=b64), *argv[1:]]
    code, out, err = run(capsys, *argv, "--at", manifest_time(vector_id))
    assert code == 1
    tee = expected[0].split(":")[0]
    assert out.splitlines()[0] == f"{tee}: REJECTED: {reason}"
    assert err.splitlines()[-1] == f"teaclave: error: evidence rejected: {reason}"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (
            [
                v("dcap-qvl/tdx_quote_outdated"),
                *("--at", "2026-03-01T00:00:00Z"),
                *("--collateral", v("dcap-qvl/tdx_quote_outdated_collateral.json")),
            ],
            "no matching TCB level (PCK SGX TCB comp 8 = 3 < 5)",
        ),
        (
            VALID["dcap-qvl/sgx"][0] + ["--at", "2025-08-01T00:00:00Z"],
            "PCK certificate chain: CRL of 'Intel SGX PCK Processor CA' expired at "
            "2025-07-19 10:23:18+00:00",
        ),
        (
            VALID["dcap-qvl/sgx"][0] + ["--at", SGX_T, "--root", v(MILAN_CHAIN)],
            "root CA CRL is not issued by 'SEV-Milan'",
        ),
        (
            VALID["trustee/milan-vcek"][0]
            + ["--at", SNP_T]
            + ["--root", v("dcap-qvl/TrustedRootCA.der")],
            "ARK-Milan is not the pinned ARK",
        ),
        (
            [v("ccc-interoperable-ra-tls/gramine-cert.pem"), "--at", "2025-01-01"],
            "no collateral: TCB not evaluated (give --collateral FILE or a collateral cache)",
        ),
        (
            [v("evervault-attestation-doc-validation/valid-certificate.der"), "--at", "2023-09-18"],
            "certificate carries no RA-TLS evidence",
        ),
    ],
)
def test_rejected_evidence(
    capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.splitlines()[-1] == f"teaclave: error: evidence rejected: {reason}"


def test_collateral_from_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    collateral = (VECTORS / "dcap-qvl/sgx_quote_collateral.json").read_bytes()
    CollateralCache(tmp_path).store_intel("00a067110000", tdx=False, collateral_json=collateral)
    argv = [v("dcap-qvl/sgx_quote"), "--cache-dir", str(tmp_path)]
    code, out, _ = run(capsys, *argv, "--at", SGX_T)
    assert (code, out.splitlines()[0]) == (0, "sgx: VALID")
    config = tmp_path / "teaclave.toml"
    config.write_text(f'[attestation]\ncollateral_dir = "{tmp_path}"\n')
    code, out, _ = run(capsys, v("dcap-qvl/sgx_quote"), "--config", str(config), "--at", SGX_T)
    assert (code, out.splitlines()[0]) == (0, "sgx: VALID")
    code, _, err = run(capsys, *argv, "--at", "2025-08-01T00:00:00Z")
    assert code == 1
    assert err.splitlines()[-1].startswith(
        "teaclave: error: Intel collateral for SGX FMSPC 00a067110000 (PCK processor CA) is not "
        "available at 2025-08-01T00:00:00Z: TCB info expired at 2025-07-19T10:56:11Z;"
    )


def test_ratls_quote_collateral_from_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [v("ccc-interoperable-ra-tls/gramine-cert.pem"), "--cache-dir", str(tmp_path)]
    code, _, err = run(capsys, *argv, "--at", "2025-01-01")
    assert code == 1
    assert err.splitlines()[-1].startswith(
        "teaclave: error: Intel collateral for SGX FMSPC 00606a000000 (PCK "
    )
    assert "nothing is cached in" in err


def test_snp_keys_from_an_unreachable_kds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], free_port: int
) -> None:
    argv = [v("trustee/test-report.bin"), "--at", SNP_T, "--cache-dir", str(tmp_path)]
    argv += ["--kds-url", f"http://127.0.0.1:{free_port}", "--product", "milan"]
    code, _, err = run(capsys, *argv)
    assert code == 1
    message = err.splitlines()[-1]
    assert message.startswith("teaclave: error: AMD VCEK of Milan chip c38427a30d4c7af9… at TCB")
    assert f"refreshing failed: GET http://127.0.0.1:{free_port}/vcek/v1/Milan/" in message


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: FILE"),
        ([v("trustee/test-report.bin")], "an SEV-SNP report needs --vek FILE --ca-chain FILE"),
        (
            [v("trustee/test-report.bin"), "--vek", v("trustee/test-vcek.der")],
            "--vek and --ca-chain go together",
        ),
        (
            [v("trustee/test-report.bin"), "--cache-dir", "/nonexistent"],
            "an SNP v2 report does not name its product line: give --product",
        ),
        ([v("dcap-qvl/sgx_quote"), "--vek", v("trustee/test-vcek.der")], "--vek does not apply"),
        ([v("nitrite-blocky/nitro_attestation.b64"), "--product", "Milan"], "--product does not"),
        ([v("trustee/README.txt")], "not recognised as evidence"),
        ([v("nonexistent.bin")], "No such file or directory"),
        ([v("dcap-qvl/sgx_quote"), "--at", "yesterday"], "not an ISO-8601 time: 'yesterday'"),
        (
            [v("dcap-qvl/sgx_quote"), "--collateral", v("trustee/README.txt")],
            "collateral JSON",
        ),
        ([v("dcap-qvl/sgx_quote"), "--root", v("trustee/README.txt")], "--root"),
        ([v("dcap-qvl/sgx_quote"), "--pccs-url", "ftp://pccs"], "pccs_url must be an http"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert message in err


def test_detect() -> None:
    quote = (VECTORS / "dcap-qvl/sgx_quote").read_bytes()  # carries PEM inside: still a quote
    assert detect(quote) == (INTEL, quote)
    report = (VECTORS / "trustee/test-report.bin").read_bytes()
    assert detect(report) == (SNP, report)
    document = base64.b64decode((VECTORS / "nitrite-blocky/nitro_attestation.b64").read_bytes())
    assert detect(base64.b64encode(document) + b"\n") == (NITRO, document)
    assert detect(b"\xd2" + document) == (NITRO, b"\xd2" + document)
    der = (VECTORS / "evervault-attestation-doc-validation/valid-certificate.der").read_bytes()
    assert detect(der) == (RATLS, der)
    pem = b"subject=...\n-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der)
    assert detect(pem + b"-----END CERTIFICATE-----\n") == (RATLS, der)
