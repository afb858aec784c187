"""A task's log (``save_log``) through the platform: its participants read it, nobody else."""

import textwrap
from pathlib import Path

import pytest
from e2e_helpers import cli, own_data, run_task
from e2e_platform import Platform

from teaclave.client import FunctionArgument, FunctionInput, PermissionDenied, TaskOutputs

LOGGING = """
import logging

def entrypoint(argv):
    with teaclave_open("data", "rb") as data:
        lines = data.read().decode().splitlines()
    print("read", len(lines), "lines")
    logging.warning("first line: %s", lines[0])
    return str(len(lines))
"""


def test_a_tasks_log_reaches_its_participants_only(
    platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with platform.admin() as admin:  # a public function: its owner takes no part
        function_id = admin.register_function(
            "logging",
            "prints and logs",
            "python",
            payload=textwrap.dedent(LOGGING).encode(),
            arguments=[FunctionArgument("save_log", "", True)],
            inputs=[FunctionInput("data")],
        )
    alice, bob, carol = platform.new_user(), platform.new_user(), platform.new_user()
    data = own_data(platform, bob, b"confidential row\nanother row\n")

    task_id = run_task(
        alice, function_id, {"save_log": "true"}, {"data": (bob, data.input_id)}, {}, "python"
    )
    log = ("read 2 lines", "[WARNING root] first line: confidential row")
    assert alice.get_task_outputs(task_id, timeout=60) == TaskOutputs(b"2", {}, log)
    assert bob.get_task(task_id).result == TaskOutputs(b"2", {}, log)
    code, out, _ = cli(platform, bob, tmp_path / "session.json", capsys, "task", "result", task_id)
    assert (code, out.splitlines()) == (0, ["2", *(f"log: {line}" for line in log)])

    with platform.admin() as admin:
        for outsider in (carol, admin):  # not participants, even a PlatformAdmin
            with pytest.raises(PermissionDenied, match="not a participant of the task"):
                outsider.get_task(task_id)
            with pytest.raises(PermissionDenied, match="not a participant of the task"):
                outsider.get_task_outputs(task_id, timeout=5)

    quiet = run_task(
        alice, function_id, {"save_log": "false"}, {"data": (bob, data.input_id)}, {}, "python"
    )
    assert alice.get_task_outputs(quiet, timeout=60) == TaskOutputs(b"2", {}, ())
