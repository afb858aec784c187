"""A client generated from the reference's field tables interoperates on the wire."""

import json
import subprocess
import sys
from pathlib import Path

from e2e_platform import Platform

CLIENT = Path(__file__).resolve().parents[1] / "wire_client" / "client.py"


def test_independent_client_runs_a_task(platform: Platform) -> None:
    endpoints = platform.config.endpoints
    result = subprocess.run(
        [
            sys.executable,
            str(CLIENT),
            endpoints.authentication_api,
            endpoints.frontend_api,
            platform.config.auth.admin_user,
            platform.admin_password,
            platform.simulation_key,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["function_id"].startswith("function-")
    assert summary["task_id"].startswith("task-")
    assert summary["status"] == 10  # Finished
    assert summary["creator"] == platform.config.auth.admin_user
    assert summary["return_value"] == "Hello From Teaclave!"
    assert summary["platform_proto_loaded"] is False
