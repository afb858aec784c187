"""The collateral cache: fetch from a loopback PCCS / KDS, reuse offline, refetch when stale."""

from __future__ import annotations

import contextlib
import json
import stat
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from teaclave_fixtures import VECTORS
from transport_helpers import serve_in_thread

from teaclave.attestation import roots, snp
from teaclave.attestation.intel import CollateralError, verify_quote
from teaclave.config import AttestationConfig, Config
from teaclave.transport.collateral import (
    AMD_KDS_URL,
    CollateralCache,
    CollateralUnavailable,
    quote_needs,
)

T = datetime(2025, 7, 1, tzinfo=UTC)  # inside the dcap-qvl SGX collateral's window
LATER = datetime(2025, 8, 1, tzinfo=UTC)  # after it
SGX_FMSPC = "00a067110000"
SNP_T = datetime(2025, 6, 1, tzinfo=UTC)


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def sgx_collateral() -> dict[str, str]:
    doc: dict[str, str] = json.loads(vector("dcap-qvl/sgx_quote_collateral.json"))
    return doc


Routes = dict[str, tuple[int, bytes, dict[str, str]]]


def pccs_routes(collateral: dict[str, str], *, tdx: bool = False) -> Routes:
    """What a PCCS serves for one FMSPC: bodies as PCS sends them, chains in headers."""

    def chain(key: str) -> str:
        return quote(collateral[key], safe="")

    def signed(key: str, prefix: str) -> bytes:
        text = f'{{"{key}":{collateral[prefix]},"signature":"{collateral[prefix + "_signature"]}"}}'
        return text.encode()

    tee = "tdx" if tdx else "sgx"
    fmspc = json.loads(collateral["tcb_info"])["fmspc"].lower()
    return {
        f"/{tee}/certification/v4/tcb?fmspc={fmspc}": (
            200,
            signed("tcbInfo", "tcb_info"),
            {"TCB-Info-Issuer-Chain": chain("tcb_info_issuer_chain")},
        ),
        f"/{tee}/certification/v4/qe/identity": (
            200,
            signed("enclaveIdentity", "qe_identity"),
            {"SGX-Enclave-Identity-Issuer-Chain": chain("qe_identity_issuer_chain")},
        ),
        "/sgx/certification/v4/pckcrl?ca=processor&encoding=der": (
            200,
            bytes.fromhex(collateral["pck_crl"]),
            {"SGX-PCK-CRL-Issuer-Chain": chain("pck_crl_issuer_chain")},
        ),
        "/sgx/certification/v4/rootcacrl": (200, collateral["root_ca_crl"].encode(), {}),
    }


class Server:
    """A loopback HTTP server answering GETs from a route table, recording the paths asked."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                status, body, headers = outer.routes.get(self.path, (404, b"not found", {}))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"


@pytest.fixture
def serve() -> Iterator[Callable[[Routes], Server]]:
    """Start loopback servers for a test (stopped at its end unless stopped before)."""
    with contextlib.ExitStack() as stack:

        def start(routes: Routes) -> Server:
            server = Server(routes)
            stack.enter_context(serve_in_thread(server.http))
            return server

        yield start


def stop(server: Server) -> None:
    server.http.shutdown()
    server.http.server_close()


def cached_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


# --- Intel ---


def test_fetch_store_and_reuse_offline(
    tmp_path: Path, serve: Callable[[Routes], Server], socket_connections: list[object]
) -> None:
    server = serve(pccs_routes(sgx_collateral()))
    cache = CollateralCache(tmp_path, pccs_url=server.url + "/")
    collateral = cache.intel(SGX_FMSPC.upper(), tdx=False, ca="processor", now=T)
    assert sorted(server.requests) == sorted(pccs_routes(sgx_collateral()))

    appraisal = verify_quote(
        vector("dcap-qvl/sgx_quote"), collateral=collateral, root=roots.intel_root(), now=T
    )
    assert appraisal.valid, appraisal.reason
    assert appraisal.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert appraisal.advisories == ("INTEL-SA-00289", "INTEL-SA-00615")

    [entry] = cached_files(tmp_path)
    assert entry == tmp_path / "intel" / f"sgx-{SGX_FMSPC}-processor.json"
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert json.loads(entry.read_text())["tcb_info"] == sgx_collateral()["tcb_info"]

    stop(server)
    socket_connections.clear()
    offline = CollateralCache(tmp_path, pccs_url=server.url)
    again = offline.intel_for_quote(vector("dcap-qvl/sgx_quote"), now=datetime(2025, 7, 15))
    assert again.tcb_info == collateral.tcb_info
    assert socket_connections == []


def test_imported_collateral_serves_sgx_and_tdx_quotes(tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path)
    for name, tdx, pck_ca in (("sgx_quote", False, "processor"), ("tdx_quote", True, "platform")):
        quote_bytes = vector(f"dcap-qvl/{name}")
        fmspc, is_tdx, ca = quote_needs(quote_bytes)
        assert (is_tdx, ca) == (tdx, pck_ca)
        cache.store_intel(
            fmspc, tdx=tdx, collateral_json=vector(f"dcap-qvl/{name}_collateral.json")
        )
        collateral = cache.intel_for_quote(quote_bytes, now=T)
        appraisal = verify_quote(quote_bytes, collateral=collateral, root=roots.intel_root(), now=T)
        assert appraisal.valid, appraisal.reason
    assert [p.name for p in cached_files(tmp_path)] == [
        f"sgx-{SGX_FMSPC}-processor.json",
        "tdx-b0c06f000000-platform.json",
    ]


def stale_sgx_collateral() -> bytes:
    """The vector's collateral with a TCB info that says it expired on 2025-06-20 (unsigned)."""
    collateral = sgx_collateral()
    info = json.loads(collateral["tcb_info"])
    collateral["tcb_info"] = collateral["tcb_info"].replace(
        info["nextUpdate"], "2025-06-20T00:00:00Z"
    )
    return json.dumps(collateral).encode()


def test_expired_entry_is_refetched(tmp_path: Path, serve: Callable[[Routes], Server]) -> None:
    server = serve(pccs_routes(sgx_collateral()))
    cache = CollateralCache(tmp_path, pccs_url=server.url)
    cache.store_intel(SGX_FMSPC, tdx=False, collateral_json=stale_sgx_collateral())
    collateral = cache.intel(SGX_FMSPC, tdx=False, ca="processor", now=T)
    assert server.requests  # refetched
    assert collateral.tcb_info is not None
    assert collateral.tcb_info.text == sgx_collateral()["tcb_info"]
    stored = json.loads((tmp_path / "intel" / f"sgx-{SGX_FMSPC}-processor.json").read_text())
    assert stored["tcb_info"] == sgx_collateral()["tcb_info"]


def test_expired_and_unreachable_says_what_and_since_when(tmp_path: Path, free_port: int) -> None:
    url = f"http://127.0.0.1:{free_port}"
    cache = CollateralCache(tmp_path, pccs_url=url, timeout=2)
    cache.store_intel(SGX_FMSPC, tdx=False, collateral_json=stale_sgx_collateral())
    with pytest.raises(CollateralUnavailable) as info:
        cache.intel(SGX_FMSPC, tdx=False, ca="processor", now=T)
    message = str(info.value)
    assert message.startswith(
        f"Intel collateral for SGX FMSPC {SGX_FMSPC} (PCK processor CA) is not available at "
        "2025-07-01T00:00:00Z: TCB info expired at 2025-06-20T00:00:00Z; refreshing failed: "
        f"GET {url}/sgx/certification/v4/tcb?fmspc={SGX_FMSPC}: "
    )
    assert "refused" in message


def test_without_url_says_how_to_refresh(tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path)
    cache.store_intel(
        SGX_FMSPC, tdx=False, collateral_json=vector("dcap-qvl/sgx_quote_collateral.json")
    )
    with pytest.raises(CollateralUnavailable) as info:
        cache.intel(SGX_FMSPC, tdx=False, ca="processor", now=LATER)
    assert str(info.value) == (
        f"Intel collateral for SGX FMSPC {SGX_FMSPC} (PCK processor CA) is not available at "
        "2025-08-01T00:00:00Z: TCB info expired at 2025-07-19T10:56:11Z; QE identity expired at "
        "2025-07-19T10:01:18Z; PCK CRL expired at 2025-07-19T10:23:18Z; to refresh it, set "
        "attestation.pccs_url, or import current collateral (store_intel)"
    )
    with pytest.raises(CollateralUnavailable, match=r"nothing is cached in .*platform\.json"):
        cache.intel(SGX_FMSPC, tdx=False, ca="platform", now=T)


def test_fetched_but_not_current(tmp_path: Path, serve: Callable[[Routes], Server]) -> None:
    server = serve(pccs_routes(sgx_collateral()))
    cache = CollateralCache(tmp_path, pccs_url=server.url)
    with pytest.raises(CollateralUnavailable) as info:
        cache.intel(SGX_FMSPC, tdx=False, ca="processor", now=LATER)
    assert str(info.value).startswith(
        f"Intel collateral for SGX FMSPC {SGX_FMSPC} (PCK processor CA) as fetched now: "
        "TCB info expired at 2025-07-19T10:56:11Z;"
    )
    assert len(cached_files(tmp_path)) == 1  # kept: it is the newest there is


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("status", "HTTP 500"),
        ("header", "sent no TCB-Info-Issuer-Chain header"),
        ("body", "sent malformed collateral"),
    ],
)
def test_bad_pccs_answers(
    tmp_path: Path, serve: Callable[[Routes], Server], change: str, message: str
) -> None:
    routes = pccs_routes(sgx_collateral())
    path = f"/sgx/certification/v4/tcb?fmspc={SGX_FMSPC}"
    status, body, headers = routes[path]
    routes[path] = {
        "status": (500, b"", headers),
        "header": (status, body, {}),
        "body": (status, b'{"tcbInfo": 1}', headers),
    }[change]
    cache = CollateralCache(tmp_path, pccs_url=serve(routes).url)
    with pytest.raises(CollateralUnavailable, match=message):
        cache.intel(SGX_FMSPC, tdx=False, ca="processor", now=T)
    assert cached_files(tmp_path) == []


def test_from_config(tmp_path: Path) -> None:
    config = Config(data_dir=str(tmp_path))
    assert CollateralCache.from_config(config).directory == tmp_path.resolve() / "collateral"
    settings = AttestationConfig(
        collateral_dir=str(tmp_path / "c"), pccs_url="https://pccs:8081/", kds_url=AMD_KDS_URL
    )
    cache = CollateralCache.from_config(replace(config, attestation=settings))
    assert (cache.directory, cache.pccs_url, cache.kds_url) == (
        tmp_path / "c",
        "https://pccs:8081",
        "https://kdsintf.amd.com",
    )


def test_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pccs_url must be an http"):
        CollateralCache(tmp_path, pccs_url="file:///etc")
    cache = CollateralCache(tmp_path)
    with pytest.raises(ValueError, match="FMSPC must be 12 hex digits"):
        cache.intel("00a0", tdx=False, ca="processor", now=T)
    with pytest.raises(ValueError, match="PCK CA must be one of processor, platform"):
        cache.intel(SGX_FMSPC, tdx=False, ca="root", now=T)
    collateral = vector("dcap-qvl/sgx_quote_collateral.json")
    with pytest.raises(CollateralError, match="not of TDX FMSPC 00a067110000"):
        cache.store_intel(SGX_FMSPC, tdx=True, collateral_json=collateral)
    with pytest.raises(CollateralError, match="collateral JSON"):
        cache.store_intel(SGX_FMSPC, tdx=False, collateral_json=b"{")
    assert cached_files(tmp_path) == []


# --- AMD ---


def kds_routes() -> Routes:
    report = snp.parse_report(vector("trustee/test-report.bin"))
    bundle = vector("trustee/milan_ask_ark_asvk.pem").decode()
    blocks = [b + "-----END CERTIFICATE-----\n" for b in bundle.split("-----END CERTIFICATE-----")]
    ask_ark = "".join(b for b in blocks if "BEGIN" in b)
    query = "blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"  # REPORTED_TCB 0x7308000000000003
    return {
        f"/vcek/v1/Milan/{report.chip_id.hex()}?{query}": (
            200,
            vector("trustee/test-vcek.der"),
            {},
        ),
        "/vcek/v1/Milan/cert_chain": (200, ask_ark.encode(), {}),
    }


def test_amd_kds_fetch_and_offline_reuse(
    tmp_path: Path, serve: Callable[[Routes], Server], socket_connections: list[object]
) -> None:
    server = serve(kds_routes())
    cache = CollateralCache(tmp_path, kds_url=server.url)
    report = vector("trustee/test-report.bin")
    vek, chain = cache.amd_for_report(report, now=SNP_T, product="milan")
    assert sorted(server.requests) == sorted(kds_routes())
    assert vek == vector("trustee/test-vcek.der")
    appraisal = snp.verify_report(
        report, vek=vek, ca_chain=chain, now=SNP_T, ark_fingerprints=roots.AMD_ARK_FINGERPRINTS
    )
    assert appraisal.valid, appraisal.reason
    for path in cached_files(tmp_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    stop(server)
    socket_connections.clear()
    parsed = snp.parse_report(report)
    again = CollateralCache(tmp_path, kds_url=server.url).amd_vek(
        "Milan", parsed.chip_id, parsed.reported_tcb, SNP_T
    )
    assert again == (vek, chain)
    assert socket_connections == []


def test_amd_errors(tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path)
    report = vector("trustee/test-report.bin")
    with pytest.raises(ValueError, match="SNP v2 report does not name its product line"):
        cache.amd_for_report(report, now=SNP_T)
    with pytest.raises(CollateralUnavailable) as info:
        cache.amd_for_report(report, now=SNP_T, product="Milan")
    assert "AMD VCEK of Milan chip c38427a30d4c7af9… at TCB 0x7308000000000003 is not " in str(
        info.value
    )
    assert str(info.value).endswith(
        "to refresh it, set attestation.kds_url, or use the VEK and CA chain sent with the report"
    )
    vlek_report = vector("trustee/test-vlek-report.bin")  # v3: CPUID says Milan; no CHIP_ID
    with pytest.raises(CollateralUnavailable, match="the report has no CHIP_ID"):
        cache.amd_for_report(vlek_report, now=SNP_T)


def test_kds_url_path(tmp_path: Path, serve: Callable[[Routes], Server]) -> None:
    server = serve({})
    cache = CollateralCache(tmp_path, kds_url=server.url)
    parsed = snp.parse_report(vector("trustee/test-report.bin"))
    with pytest.raises(CollateralUnavailable, match="HTTP 404"):
        cache.amd_vek("Turin", parsed.chip_id, 0x0300000004030201, SNP_T)
    url = urlsplit(server.requests[0])
    assert url.path == f"/vcek/v1/Turin/{parsed.chip_id[:8].hex()}"
    assert parse_qs(url.query) == {
        "fmcSPL": ["1"],
        "blSPL": ["2"],
        "teeSPL": ["3"],
        "snpSPL": ["4"],
        "ucodeSPL": ["3"],
    }
