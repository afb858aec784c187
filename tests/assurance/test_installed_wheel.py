"""The installed wheel stands on its own: built from a frozen copy of the project,
installed offline with its locked dependencies into a fresh virtual environment, and run
from an empty directory with a HOME of its own (no checkout, no uv.lock in sight)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from wheel_helpers import build_wheel, frozen_source, uv

from teaclave.cli.demo import write_config
from teaclave.config import ADMIN_PASSWORD_ENV, load_config
from tests.demo_output import assert_demo_succeeded


@dataclass(frozen=True)
class Installed:
    """The virtual environment, an empty working directory, and what the lock pins."""

    venv: Path
    cwd: Path
    home: Path
    source: Path
    pinned: dict[str, str]  # runtime dependencies exported from uv.lock: name -> version

    @property
    def teaclave(self) -> Path:
        return self.venv / "bin" / "teaclave"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        return {**env, "HOME": str(self.home), **extra}

    def run(self, *args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.teaclave, *args],
            cwd=self.cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    source = frozen_source(root / "source")
    wheel = build_wheel(source, root / "dist")
    # The runtime dependencies exactly as locked (URLs and hashes), for uv's cache.
    uv("export", "--frozen", "--no-dev", "--no-emit-project", "--format", "pylock.toml",
       "--output-file", root / "pylock.toml", cwd=source)  # fmt: skip
    venv = root / "venv"
    uv("venv", "--python", sys.executable, venv, cwd=root)
    python = venv / "bin" / "python"
    uv("pip", "install", "--python", python, "-r", root / "pylock.toml", cwd=root)
    # The wheel's own requirements are resolved against what is now installed.
    uv("pip", "install", "--python", python, wheel, cwd=root)
    pinned = {
        p["name"]: p["version"]
        for p in tomllib.loads((root / "pylock.toml").read_text())["packages"]
        if Marker(p.get("marker", "python_version > '0'")).evaluate()  # pins for this Python
    }
    (root / "empty").mkdir()
    (root / "home").mkdir()
    return Installed(venv, root / "empty", root / "home", source, pinned)


def test_teaclave_is_imported_from_the_venv(installed: Installed) -> None:
    result = subprocess.run(
        [installed.venv / "bin" / "python", "-c", "import teaclave; print(teaclave.__file__)"],
        cwd=installed.cwd,
        env=installed.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(result.stdout.strip()).is_relative_to(installed.venv / "lib")


def test_demo(installed: Installed) -> None:
    assert_demo_succeeded(installed.run("demo", timeout=240))


@pytest.fixture
def served(installed: Installed, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """`teaclave serve --config FILE` of the installed wheel; (config, password, log)."""
    config = write_config(tmp_path)  # loopback ports, data below tmp_path
    password = secrets.token_urlsafe(16)
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [installed.teaclave, "serve", "--config", config],
            cwd=installed.cwd,
            env=installed.env(**{ADMIN_PASSWORD_ENV: password}),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield config, password, str(log)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, log.read_text()
    leftovers = subprocess.run(["pgrep", "-f", str(config)], capture_output=True, check=False)
    assert leftovers.stdout == b""


def test_serve_accepts_an_attested_login(
    installed: Installed, served: tuple[Path, str, str], tmp_path: Path
) -> None:
    config_path, password, log = served
    config = load_config(config_path)
    key = _simulation_key(Path(log))
    session = tmp_path / "session.json"
    endpoints = [
        "--auth-address", config.endpoints.authentication_api,
        "--frontend-address", config.endpoints.frontend_api,
        "--simulation-key", key,
        "--session", str(session),
    ]  # fmt: skip
    login = ["user", "login", config.auth.admin_user, "--password", password, *endpoints]
    for _ in range(120):  # the services start in a few seconds
        result = installed.run(*login)
        if result.returncode == 0 or "UNAVAILABLE" not in result.stderr:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr + Path(log).read_text()
    assert result.stdout.startswith(f"Logged in as {config.auth.admin_user}")
    # An attested call to the frontend with that session: the admin's functions (none).
    result = installed.run("function", "list", "--json", *endpoints)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"registered_functions": [], "allowed_functions": []}
    # A client that does not trust this simulated platform key refuses the platform.
    result = installed.run(*login, "--simulation-key", "00" * 32)
    assert result.returncode == 1
    assert f"presents SIMULATED evidence from platform key {key}, which is not a trusted one" in (
        result.stderr
    )


def _simulation_key(log: Path) -> str:
    for _ in range(600):
        match = re.search(r"--simulation-key ([0-9a-f]{64})", log.read_text())
        if match:
            return match.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no simulation key printed: {log.read_text()}")


def test_tcb_lists_every_service_against_the_shipped_manifest(installed: Installed) -> None:
    result = installed.run("tcb", timeout=300)
    assert result.returncode == 0, result.stderr
    shipped = next(installed.venv.glob("lib/python*/site-packages/teaclave/assurance"))
    verdict = result.stdout.splitlines()[-1]
    assert verdict == (
        f"native code checked against {shipped / 'native-manifest.toml'}: "
        "every native distribution is listed"
    )
    for service in ("storage", "access_control", "authentication", "management", "frontend",
                    "scheduler", "execution"):  # fmt: skip
        assert f"== {service}: " in result.stdout
    assert "  teaclave.services.storage (" in result.stdout


def test_deps_map_is_the_installed_closure(installed: Installed) -> None:
    result = installed.run("deps", "map", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"dependencies: the installed distributions of {installed.venv}\n"
    world = {p["name"]: p for p in json.loads(result.stdout)}
    # Exactly the locked runtime dependencies, each reached from teaclave, none missing.
    assert {n: p["version"] for n, p in world.items()} == installed.pinned
    assert {p["reach"] for p in world.values()} == {"direct", "transitive"}
    assert world["grpcio"]["reach"] == "direct"
    assert world["grpcio"]["native"]
    assert world["pyjwt"]["licence"] == "MIT"
    text = installed.run("deps", "map")
    assert text.stdout.startswith("teaclave 0.1.0\nruntime:\n")
    assert "  - grpcio==" in text.stdout
    assert text.stdout.rstrip().endswith(
        f"{len(installed.pinned)} installed packages "
        f"({sum(p['reach'] == 'direct' for p in world.values())} direct, "
        f"{sum(p['reach'] == 'transitive' for p in world.values())} transitive); "
        f"{sum(p['native'] for p in world.values())} with native code"
    )


def test_deps_sbom_of_the_installed_distributions_and_of_a_lock(installed: Installed) -> None:
    result = installed.run("deps", "sbom")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["metadata"]["component"]["purl"] == "pkg:pypi/teaclave@0.1.0"
    [identity] = doc["metadata"]["properties"]
    assert identity["name"] == "teaclave:environment-sha256"
    components = {c["name"]: c for c in doc["components"]}
    assert {n: c["version"] for n, c in components.items()} == installed.pinned
    grpcio = {p["name"]: p["value"] for p in components["grpcio"]["properties"]}
    assert len(grpcio["teaclave:record-sha256"]) == 64
    assert components["grpcio"]["scope"] == "required"
    [root] = [d for d in doc["dependencies"] if d["ref"] == "pkg:pypi/teaclave@0.1.0"]
    assert f"pkg:pypi/grpcio@{installed.pinned['grpcio']}" in root["dependsOn"]

    lock = installed.source / "uv.lock"
    result = installed.run("deps", "sbom", "--lock", lock)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    [identity] = doc["metadata"]["properties"]
    assert identity == {
        "name": "teaclave:lock-sha256",
        "value": hashlib.sha256(lock.read_bytes()).hexdigest(),
    }
    components = {c["name"]: c for c in doc["components"]}
    assert components["pytest"]["scope"] == "optional"  # dev: in the lock, not installed
    assert components["grpcio"]["hashes"][0]["alg"] == "SHA-256"


def _osv(directory: Path, ident: str, package: str, events: list[dict[str, str]]) -> None:
    record = {
        "id": ident,
        "modified": "2026-01-01T00:00:00Z",
        "summary": "written for this test",
        "affected": [
            {
                "package": {"name": package, "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
    }
    (directory / f"{ident}.json").write_text(json.dumps(record))


def test_deps_audit_of_the_installed_versions(installed: Installed, tmp_path: Path) -> None:
    """A tiny OSV snapshot written here: an old advisory passes, one naming the installed
    grpcio version fails the audit."""
    snapshot = tmp_path / "osv"
    snapshot.mkdir()
    _osv(snapshot, "TEST-OLD", "grpcio", [{"introduced": "0"}, {"fixed": "1.0"}])
    result = installed.run("deps", "audit", "--advisories", snapshot)
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(installed.pinned)
    assert f"{count} of {count} installed packages checked; 0 with applicable advisories" in (
        result.stdout
    )
    version = installed.pinned["grpcio"]
    _osv(snapshot, "TEST-NOW", "grpcio", [{"introduced": "1.0"}, {"last_affected": version}])
    result = installed.run("deps", "audit", "--advisories", snapshot)
    assert result.returncode == 1
    assert f"  grpcio {version}: 1 advisories" in result.stdout
    assert f"TEST-NOW: affected >=1.0, <={version}; fixed: no fixed version" in result.stdout
    assert "audit failed: 1 packages with applicable advisories" in result.stderr
