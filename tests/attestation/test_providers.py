"""Evidence providers against fake kernel interfaces that return real recorded evidence."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import cbor2
import pytest
from teaclave_fixtures import VECTORS

from teaclave.attestation import providers, ratls
from teaclave.attestation.providers import (
    ConfigfsTsm,
    GramineAttestation,
    NitroNsm,
    ProviderError,
    detect,
)

TDX_QUOTE = (VECTORS / "go-tdx-guest" / "tdx_prod_quote_SPR_E4.dat").read_bytes()
SNP_REPORT = (VECTORS / "trustee" / "test-report.bin").read_bytes()
SNP_AUX = (VECTORS / "trustee" / "test-vcek.der").read_bytes()
NITRO_DOCUMENT = base64.b64decode(
    (VECTORS / "nitrite-blocky" / "nitro_attestation.b64").read_bytes()
)
REPORT_DATA = bytes(range(64))


def gramine_quote() -> bytes:
    """The legacy SGX quote inside the real Gramine RA-TLS certificate."""
    pem = (VECTORS / "ccc-interoperable-ra-tls" / "gramine-cert.pem").read_text()
    legacy = [
        e for e in ratls.extract_all(ssl.PEM_cert_to_DER_cert(pem)) if e.format != "interoperable"
    ]
    return legacy[0].evidence


class FakeTsm(ConfigfsTsm):
    """configfs-tsm as the kernel behaves: mkdir populates an entry, rmdir drops it."""

    def __init__(self, root: Path, provider: str, outblob: bytes, auxblob: bytes | None = None):
        super().__init__(root)
        self.attributes = {
            "provider": f"{provider}\n".encode(),
            "generation": b"1\n",
            "outblob": outblob,
        }
        if auxblob is not None:
            self.attributes["auxblob"] = auxblob
        self.entries: list[tuple[str, dict[str, bytes]]] = []

    def _create(self, entry: Path) -> None:
        entry.mkdir()
        for name, value in self.attributes.items():
            (entry / name).write_bytes(value)

    def _remove(self, entry: Path) -> None:
        files = {path.name: path.read_bytes() for path in entry.iterdir()}
        self.entries.append((entry.name, files))
        for name in files:
            (entry / name).unlink()
        entry.rmdir()


def written(fake: FakeTsm) -> dict[str, bytes]:
    """What the provider left in its (only) entry beyond the kernel's attributes."""
    [(name, files)] = fake.entries
    assert name.startswith("teaclave-")
    return {k: v for k, v in files.items() if fake.attributes.get(k) != v}


@pytest.mark.parametrize(
    ("provider", "tee", "outblob", "auxblob"),
    [("tdx_guest", "tdx", TDX_QUOTE, None), ("sev_guest", "sev-snp", SNP_REPORT, SNP_AUX)],
)
def test_configfs_tsm(
    tmp_path: Path, provider: str, tee: str, outblob: bytes, auxblob: bytes | None
) -> None:
    fake = FakeTsm(tmp_path, provider, outblob, auxblob)
    report = fake.report(REPORT_DATA)
    assert (report.provider, report.outblob, report.auxblob, report.generation) == (
        provider,
        outblob,
        auxblob,
        1,
    )
    assert written(fake) == {"inblob": REPORT_DATA}
    assert list(tmp_path.iterdir()) == []  # the entry was removed
    assert fake.evidence(REPORT_DATA) == outblob
    assert fake.tee == tee
    assert list(tmp_path.iterdir()) == []


def test_configfs_tsm_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProviderError, match=r"configfs-tsm is not available: .* does not exist"):
        ConfigfsTsm(tmp_path / "missing").evidence(REPORT_DATA)
    fake = FakeTsm(tmp_path, "tdx_guest", TDX_QUOTE)
    for bad in (b"", bytes(32), bytes(65)):
        with pytest.raises(ValueError, match="report data must be 64 bytes"):
            fake.evidence(bad)
    assert fake.entries == []  # refused before touching the kernel

    with pytest.raises(ProviderError, match="unknown configfs-tsm provider 'foo_guest'"):
        FakeTsm(tmp_path, "foo_guest", TDX_QUOTE).evidence(REPORT_DATA)
    with pytest.raises(ProviderError, match="empty evidence"):
        FakeTsm(tmp_path, "tdx_guest", b"").evidence(REPORT_DATA)

    generations = iter(["1", "2"])
    real = providers._read_text
    monkeypatch.setattr(
        providers,
        "_read_text",
        lambda path: next(generations) if path.name == "generation" else real(path),
    )
    with pytest.raises(ProviderError, match="rewritten while being read"):
        fake.evidence(REPORT_DATA)
    assert list(tmp_path.iterdir()) == []


def test_configfs_tsm_kernel_refusal(tmp_path: Path) -> None:
    class Refusing(FakeTsm):
        def _create(self, entry: Path) -> None:
            raise PermissionError("Operation not permitted")

    with pytest.raises(ProviderError, match="cannot create configfs-tsm report"):
        Refusing(tmp_path, "tdx_guest", TDX_QUOTE).evidence(REPORT_DATA)

    class NoOutblob(FakeTsm):
        def _create(self, entry: Path) -> None:
            super()._create(entry)
            (entry / "outblob").unlink()

    fake = NoOutblob(tmp_path, "tdx_guest", TDX_QUOTE)
    with pytest.raises(ProviderError, match=r"report .* failed"):
        fake.evidence(REPORT_DATA)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def gramine_dev(tmp_path: Path) -> Path:
    (tmp_path / "attestation_type").write_text("dcap\n")
    (tmp_path / "user_report_data").write_bytes(b"")
    (tmp_path / "quote").write_bytes(gramine_quote())
    return tmp_path


def test_gramine(gramine_dev: Path) -> None:
    provider = GramineAttestation(gramine_dev)
    assert provider.tee == "sgx"
    assert provider.evidence(REPORT_DATA) == gramine_quote()
    assert (gramine_dev / "user_report_data").read_bytes() == REPORT_DATA
    assert sorted(p.name for p in gramine_dev.iterdir()) == [
        "attestation_type",
        "quote",
        "user_report_data",
    ]
    assert ratls.quote_report_data(gramine_quote())[0] == "sgx"


def test_gramine_errors(tmp_path: Path, gramine_dev: Path) -> None:
    with pytest.raises(ProviderError, match="Gramine attestation is not available"):
        GramineAttestation(tmp_path / "missing").evidence(REPORT_DATA)
    with pytest.raises(ValueError, match="64 bytes"):
        GramineAttestation(gramine_dev).evidence(bytes(63))
    (gramine_dev / "attestation_type").write_text("none\n")
    with pytest.raises(ProviderError, match="'none', not 'dcap'"):
        GramineAttestation(gramine_dev).evidence(REPORT_DATA)
    (gramine_dev / "attestation_type").write_text("dcap\n")
    (gramine_dev / "quote").unlink()
    with pytest.raises(ProviderError, match="Gramine attestation failed"):
        GramineAttestation(gramine_dev).evidence(REPORT_DATA)


class FakeNsm:
    """The NSM's request/response exchange, answering with a recorded document."""

    def __init__(self, response: object) -> None:
        self.response = response
        self.requests: list[object] = []

    def __call__(self, request: bytes) -> bytes:
        self.requests.append(cbor2.loads(request))
        return self.response if isinstance(self.response, bytes) else cbor2.dumps(self.response)


def test_nitro_nsm() -> None:
    fake = FakeNsm({"Attestation": {"document": NITRO_DOCUMENT}})
    provider = NitroNsm(transact=fake)
    assert provider.tee == "nitro"
    assert provider.evidence(REPORT_DATA) == NITRO_DOCUMENT
    assert fake.requests == [
        {"Attestation": {"user_data": REPORT_DATA, "nonce": None, "public_key": None}}
    ]


@pytest.mark.parametrize(
    ("response", "match"),
    [
        ({"Error": "InvalidArgument"}, "NSM refused the request: InvalidArgument"),
        (b"\xff", "not CBOR"),
        ({"Attestation": {}}, "no attestation document"),
        ({"Attestation": {"document": b""}}, "no attestation document"),
        ([1, 2], "no attestation document"),
    ],
)
def test_nitro_nsm_bad_responses(response: object, match: str) -> None:
    with pytest.raises(ProviderError, match=match):
        NitroNsm(transact=FakeNsm(response)).evidence(REPORT_DATA)


def test_nitro_nsm_device_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        NitroNsm(transact=FakeNsm({})).evidence(b"short")
    with pytest.raises(ProviderError, match="Nitro Secure Module is not available"):
        NitroNsm(tmp_path / "nsm").evidence(REPORT_DATA)
    not_a_device = tmp_path / "file"
    not_a_device.write_bytes(b"")
    with pytest.raises(ProviderError, match=r"NSM ioctl on .* failed"):
        NitroNsm(not_a_device).evidence(REPORT_DATA)
    with pytest.raises(ValueError, match="exceeds"):
        providers.nsm_ioctl(not_a_device, bytes(0x1001))


def test_detect(tmp_path: Path) -> None:
    dev, tsm, gramine, nsm = tmp_path / "dev", tmp_path / "tsm", tmp_path / "att", tmp_path / "nsm"
    dev.mkdir()

    def run() -> str | None:
        return detect(nsm_device=nsm, gramine_root=gramine, tsm_root=tsm, dev=dev)

    assert run() is None
    tsm.mkdir()
    assert run() is None  # configfs without a guest driver
    (dev / "sev-guest").touch()
    assert run() == "sev-snp"
    (dev / "tdx_guest").touch()
    assert run() == "tdx"
    gramine.mkdir()
    (gramine / "quote").touch()
    assert run() == "sgx"
    nsm.touch()
    assert run() == "nitro"


def test_interface_paths_are_those_the_providers_use() -> None:
    """Services keep these usable under the runtime manifest to renew their evidence."""
    tsm, gramine, nitro = (providers.for_name(n) for n in ("configfs-tsm", "gramine", "nitro"))
    assert isinstance(tsm, ConfigfsTsm)
    assert isinstance(gramine, GramineAttestation)
    assert isinstance(nitro, NitroNsm)
    assert providers.interface_paths("configfs-tsm") == (tsm.root,)
    assert providers.interface_paths("gramine") == (gramine.root,)
    assert providers.interface_paths("nitro") == (nitro.device,)
    assert providers.interface_paths("simulation") == ()
