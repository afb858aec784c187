"""docs/first-task.md with the CLI: users, alice's Python function (the doc's own code),
bob's encrypted data, a task created without --executor, its result and output."""

import json
import re
import secrets
from pathlib import Path

import pytest
from e2e_platform import Platform

from teaclave.cli.main import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "first-task.md"


class Cli:
    """``teaclave`` against the platform, as the user of one session file."""

    def __init__(
        self, platform: Platform, session: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.options = [
            "--auth-address", platform.config.endpoints.authentication_api,
            "--frontend-address", platform.config.endpoints.frontend_api,
            "--simulation-key", platform.simulation_key,
            "--session", str(session),
        ]  # fmt: skip
        self.capsys = capsys

    def __call__(self, *argv: str) -> str:
        code = main([*argv, *self.options])
        out, err = self.capsys.readouterr()
        assert code == 0, err
        return out.strip()


def test_first_task_as_documented(
    platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin, alice, bob = (Cli(platform, tmp_path / f"{n}.json", capsys) for n in "abc")
    admin("user", "login", platform.config.auth.admin_user, "--password", platform.admin_password)
    suffix = secrets.token_hex(3)
    admin("user", "register", f"alice-{suffix}", "--role", "FunctionOwner", "--password", "a-pw")
    admin("user", "register", f"bob-{suffix}", "--role", "DataOwner", "--password", "b-pw")

    [payload] = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    (tmp_path / "sum.py").write_text(payload)
    alice("user", "login", f"alice-{suffix}", "--password", "a-pw")
    function_id = alice(
        "function", "register", "--name", "sum", "--executor-type", "python",
        "--payload", str(tmp_path / "sum.py"), "--argument", "scale=1",
        "--input", "numbers", "--output", "total",
    )  # fmt: skip
    assert function_id.startswith("function-")

    bob("user", "login", f"bob-{suffix}", "--password", "b-pw")
    (tmp_path / "numbers.txt").write_text("1\n2\n3\n")
    key, iv, out_iv = secrets.token_hex(16), secrets.token_hex(12), secrets.token_hex(12)
    encrypted, output = (
        platform.files / f"numbers-{suffix}.enc",
        platform.files / f"total-{suffix}.enc",
    )
    cmac = bob(
        "encrypt", "-a", "aes-gcm-128", "-k", key, "--iv", iv,
        "-i", str(tmp_path / "numbers.txt"), "-o", str(encrypted), "-c",
    )  # fmt: skip
    input_id = bob(
        "input", "register", "--url", encrypted.as_uri(), "--schema", "aes-gcm-128",
        "--key", key, "--iv", iv, "--cmac", cmac,
    )  # fmt: skip
    output_id = bob(
        "output", "register", "--url", output.as_uri(), "--schema", "aes-gcm-128",
        "--key", key, "--iv", out_iv,
    )  # fmt: skip
    task_id = bob(
        "task", "create", function_id, "--arg", "scale=10",
        "--input-owner", f"numbers=bob-{suffix}", "--output-owner", f"total=bob-{suffix}",
    )  # fmt: skip
    shown = json.loads(bob("task", "get", task_id, "--json"))
    assert shown["approval_digest_contents"]["executor"] == "python"  # the function's type
    bob("task", "assign", task_id, "--input", f"numbers={input_id}",
        "--output", f"total={output_id}")  # fmt: skip
    bob("task", "approve", task_id)
    bob("task", "invoke", task_id)
    result = bob("task", "result", task_id, "--timeout", "60").splitlines()
    assert result[0] == "added 1 argument(s)"
    assert result[1].startswith("cmac of total: ")
    bob(
        "decrypt", "-a", "aes-gcm-128", "-k", key, "--iv", out_iv,
        "-i", str(output), "-o", str(tmp_path / "total.txt"),
    )  # fmt: skip
    assert (tmp_path / "total.txt").read_text() == "60"
