"""``teaclave demo``: the whole platform, a two-party PSI, and nothing left behind."""

import re
import subprocess
import sys
from pathlib import Path

from tests.demo_output import assert_demo_succeeded


def test_demo() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "teaclave.cli.main", "demo"],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    lines = assert_demo_succeeded(result)
    verified = [line for line in lines if line.startswith("[+] Verified")]
    assert len(verified) == 2
    assert all("SIMULATED" in line for line in verified)
    match = re.search(r"Starting the platform in (\S+)", result.stdout)
    assert match is not None
    workdir = match.group(1)
    assert not Path(workdir).exists()
    leftovers = subprocess.run(["pgrep", "-f", workdir], capture_output=True, check=False)
    assert leftovers.stdout == b""
