"""``teaclave demo``: the whole platform, a two-party PSI, and nothing left behind."""

import re
import subprocess
import sys
from pathlib import Path


def test_demo(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "teaclave.cli.main", "demo"],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "[+] User 0 result: 3 common items" in lines
    assert "[+] User 1 result: 3 common items" in lines
    assert any(line.endswith("(user0-output.enc): 0101010") for line in lines)
    assert any(line.endswith("(user1-output.enc): 01101") for line in lines)
    verified = [line for line in lines if line.startswith("[+] Verified")]
    assert len(verified) == 2
    assert all("SIMULATED" in line for line in verified)
    match = re.search(r"Starting the platform in (\S+)", result.stdout)
    assert match is not None
    workdir = match.group(1)
    assert not Path(workdir).exists()
    leftovers = subprocess.run(["pgrep", "-f", workdir], capture_output=True, check=False)
    assert leftovers.stdout == b""


def test_missing_fixtures(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "teaclave.cli.main", "demo", "--fixtures", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "teaclave: error: fixture functions/ordered_set_intersect/psi0.txt not found under "
        f"{tmp_path}; pass --fixtures DIR\n"
    )
