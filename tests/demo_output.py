"""What `teaclave demo` prints, checked from a checkout and from the installed wheel."""

import subprocess


def assert_demo_succeeded(result: "subprocess.CompletedProcess[str]") -> list[str]:
    """Both users' summaries and decrypted outputs as Teaclave's fixtures give them; the
    output lines."""
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "[+] User 0 result: 3 common items" in lines
    assert "[+] User 1 result: 3 common items" in lines
    assert any(line.endswith("(user0-output.enc): 0101010") for line in lines)
    assert any(line.endswith("(user1-output.enc): 01101") for line in lines)
    return lines
