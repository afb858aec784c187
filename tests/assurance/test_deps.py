"""``teaclave deps``: the lock, the dependency map, the SBOM and the strict audit."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from teaclave_fixtures import ADVISORIES

from teaclave.assurance import advisories, deps, sbom
from teaclave.assurance.lock import load_lock
from teaclave.cli.main import main
from tests.conftest import pick_free_port

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "uv.lock"

VULNERABLE_LOCK = """\
version = 1
requires-python = ">=3.11"

[[package]]
name = "cryptography"
version = "41.0.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "demo"
version = "0.1.0"
source = { editable = "." }
dependencies = [{ name = "cryptography" }]
"""


@pytest.fixture(scope="module")
def snapshot() -> advisories.Snapshot:
    return advisories.load_snapshot(ADVISORIES)


@pytest.fixture
def vulnerable_lock(tmp_path: Path) -> Path:
    path = tmp_path / "uv.lock"
    path.write_text(VULNERABLE_LOCK)
    return path


def test_snapshot_reads_json_and_yaml(snapshot: advisories.Snapshot) -> None:
    assert snapshot.files == 5  # withdrawn and other-ecosystem records are read, then dropped
    assert sorted((p, a.id) for p, found in snapshot.by_package.items() for a in found) == [
        ("cryptography", "PYSEC-2023-254"),
        ("cryptography", "TEST-LISTED-1"),
        ("grpcio", "TEST-OLD-RANGES-1"),
        ("numpy", "TEST-OLD-RANGES-1"),
    ]
    assert snapshot.description == (
        f"offline snapshot {ADVISORIES} (5 advisory files, newest modified 2024-10-10)"
    )


def test_real_lock_every_package_checked(snapshot: advisories.Snapshot) -> None:
    lock = load_lock(LOCK)
    report = advisories.audit(lock, snapshot)
    assert report.passed  # grpcio and numpy are checked against old ranges they are past
    assert {(p.name, p.version) for p in report.packages} == {
        (p.name, p.version) for p in lock.third_party()
    }
    assert {"grpcio", "numpy"} <= {p.name for p in report.packages}


def test_cli_audit_real_lock_names_every_package(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["deps", "audit", "--advisories", str(ADVISORIES), "--lock", str(LOCK), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert (data["unchecked"], data["vulnerable"], code) == (0, 0, 0)
    assert data["checked"] == len(load_lock(LOCK).third_party()) == len(data["packages"])


def test_vulnerable_pin_is_flagged(
    vulnerable_lock: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["deps", "audit", "--advisories", str(ADVISORIES), "--lock", str(vulnerable_lock)])
    captured = capsys.readouterr()
    assert code == 1
    # Neither the withdrawn record nor the other ecosystem's; both applicable ones, in file order.
    finding_lines = [
        "  cryptography 41.0.0: 2 advisories",
        "      PYSEC-2023-254 (CVE-2023-49083, GHSA-jfhm-5ghh-2f97): affected >=3.1, <41.0.6; "
        "fixed: 41.0.6",
        "        Loading a PKCS7 blob can dereference a NULL pointer (denial of service).",
        "      TEST-LISTED-1: affected listed versions; fixed: no fixed version",
        "        Invented for the tests: affects exactly the listed versions, no range.",
    ]
    assert "\n".join(finding_lines) in captured.out
    assert "TEST-WITHDRAWN-1" not in captured.out
    assert "TEST-OTHER-ECOSYSTEM-1" not in captured.out
    assert "audit failed: 1 packages with applicable advisories" in captured.err


def test_no_source_reachable_fails_with_reason(
    vulnerable_lock: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{pick_free_port()}"
    code = main(["deps", "audit", "--lock", str(vulnerable_lock), "--osv-url", closed])
    err = capsys.readouterr().err
    assert code == 1
    assert f"no advisory source reachable (OSV service {closed}:" in err
    assert "pass --advisories DIR" in err


class _FakeOsv(BaseHTTPRequestHandler):
    record: dict[str, Any] = {
        "id": "OSV-TEST-1",
        "aliases": ["CVE-0000-1"],
        "modified": "2026-01-01T00:00:00Z",
        "affected": [
            {
                "package": {"name": "cryptography", "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "42"}]}],
            }
        ],
    }

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        results = [{"vulns": [{"id": "OSV-TEST-1"}]} for _ in body["queries"]]
        self._send({"results": results})

    def do_GET(self) -> None:
        self._send(self.record)

    def _send(self, data: Any) -> None:
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_osv() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _FakeOsv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_online_source(vulnerable_lock: Path, fake_osv: str) -> None:
    report = advisories.audit(load_lock(vulnerable_lock), advisories.OsvService(fake_osv))
    [checked] = report.packages
    assert [a.finding()["fixed"] for a in checked.findings] == [["42"]]
    assert report.source.startswith(f"OSV service {fake_osv}, queried ")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "id: [unclosed", "bad.yaml: not valid YAML"),
        ("bad.json", "{", "bad.json: not valid JSON"),
        ("noid.yaml", "affected: []", "noid.yaml: missing 'id'"),
        (
            "ranges.yaml",
            "id: X-1\naffected:\n- package: {name: a, ecosystem: PyPI}\n  ranges: nope\n",
            "ranges.yaml (X-1): affected[0]: 'ranges' must be a list",
        ),
        (
            "event.yaml",
            "id: X-2\naffected:\n- package: {name: a, ecosystem: PyPI}\n"
            "  ranges: [{type: ECOSYSTEM, events: [{fixed: '1.0'}]}]\n",
            "event.yaml (X-2): affected[0]: ranges[0]: events[0]: fixed before introduced",
        ),
    ],
)
def test_malformed_advisory_is_a_precise_error(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(advisories.AdvisoryError) as info:
        advisories.load_snapshot(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / message}")


def test_empty_snapshot_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(advisories.AdvisoryError, match="no OSV advisory files"):
        advisories.load_snapshot(tmp_path)


@pytest.mark.parametrize(
    ("events", "version", "affected"),
    [
        ([{"introduced": "0"}, {"fixed": "2.0"}], "1.9", True),
        ([{"introduced": "0"}, {"fixed": "2.0"}], "2.0", False),
        ([{"introduced": "1.0"}, {"last_affected": "1.5"}], "1.5", True),
        ([{"introduced": "1.0"}, {"last_affected": "1.5"}], "1.5.1", False),
        ([{"introduced": "1.0"}], "99", True),
        ([{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}], "2.1", True),
        ([{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}], "1.5", False),
    ],
)
def test_ranges(events: list[dict[str, str]], version: str, affected: bool) -> None:
    from packaging.version import Version

    record = {
        "id": "T",
        "affected": [
            {
                "package": {"name": "p", "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
    }
    [advisory] = advisories.parse_osv(record, "test")
    assert advisory.affects(Version(version)) is affected


def test_unparsable_bound_leaves_package_unchecked(tmp_path: Path, vulnerable_lock: Path) -> None:
    (tmp_path / "odd.yaml").write_text(
        "id: X-3\naffected:\n- package: {name: cryptography, ecosystem: PyPI}\n"
        "  ranges: [{type: ECOSYSTEM, events: [{introduced: '0'}, {fixed: 'not-a-version!'}]}]\n"
    )
    report = advisories.audit(load_lock(vulnerable_lock), advisories.load_snapshot(tmp_path))
    assert not report.passed
    [checked] = report.unchecked
    assert checked.error is not None
    assert "X-3" in checked.error


def test_map_text_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = load_lock(LOCK)
    world = {i.package.name: i for i in deps.dependency_world(lock)}
    assert world["grpcio"].reach == "direct"
    assert world["grpcio"].native
    assert world["pytest"].reach == "dev"
    assert world["pyjwt"].licence == "MIT"
    assert not world["pyjwt"].native
    assert main(["deps", "map", "--lock", str(LOCK)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("teaclave 0.1.0\nruntime:\n")
    assert "  - grpcio==" in out
    assert "dependency group dev:" in out
    page = tmp_path / "map.html"
    assert main(["deps", "map", "--lock", str(LOCK), "--format", "html", "--out", str(page)]) == 0
    html = page.read_text()
    assert 'id="grpcio==' in html
    for external in ("<script", "src=", 'href="http'):
        assert external not in html


def test_sbom_is_cyclonedx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out = tmp_path / "sbom.json"
    assert main(["deps", "sbom", "--lock", str(LOCK), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc == sbom.sbom(load_lock(LOCK))  # the same lock gives the same document
    assert (doc["bomFormat"], doc["specVersion"], doc["version"]) == ("CycloneDX", "1.6", 1)
    assert doc["serialNumber"].startswith("urn:uuid:")
    assert doc["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    refs = {doc["metadata"]["component"]["bom-ref"]}
    for component in doc["components"]:
        assert {"type", "bom-ref", "name", "version", "purl"} <= component.keys()
        assert component["purl"] == f"pkg:pypi/{component['name']}@{component['version']}"
        refs.add(component["bom-ref"])
    assert len(refs) == len(doc["components"]) + 1
    hashed = [c for c in doc["components"] if c.get("hashes")]
    assert len(hashed) >= len(doc["components"]) - 2
    assert all(len(h["content"]) == 64 for c in hashed for h in c["hashes"])
    for dependency in doc["dependencies"]:
        assert dependency["ref"] in refs
        assert set(dependency["dependsOn"]) <= refs
