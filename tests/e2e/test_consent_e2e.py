"""Consent bound to a digest, end to end: owners approve what they read, may revoke until
the task is staged, and the task runs only with every approval of its current digest."""

import hashlib
import json
from pathlib import Path

import pytest
from e2e_helpers import cli, own_data, register_psi
from e2e_platform import Platform
from teaclave_fixtures import PSI_DIR

from teaclave.client import (
    DataMap,
    FailedPrecondition,
    OwnerList,
    TaskStatus,
    TeaclaveException,
)


def test_two_owners_consent_to_the_digest_they_read(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob = platform.new_user(), platform.new_user()
    a = own_data(platform, alice, (PSI_DIR / "psi0.txt").read_bytes())
    b = own_data(platform, bob, (PSI_DIR / "psi1.txt").read_bytes())
    task_id = alice.create_task(
        function_id,
        {"order": "ascending"},
        "builtin",
        [OwnerList("input_data1", [alice.user_id]), OwnerList("input_data2", [bob.user_id])],
        [OwnerList("output_result1", [alice.user_id]), OwnerList("output_result2", [bob.user_id])],
    )
    alice.assign_data_to_task(
        task_id, [DataMap("input_data1", a.input_id)], [DataMap("output_result1", a.output_id)]
    )
    read_by_alice = alice.get_task(task_id).approval_digest  # before bob assigns his data
    bob.assign_data_to_task(
        task_id, [DataMap("input_data2", b.input_id)], [DataMap("output_result2", b.output_id)]
    )

    # Alice approves what she read: the task changed since, so the approval is refused.
    with pytest.raises(FailedPrecondition, match="the task changed since you read it"):
        alice.approve_task(task_id, read_by_alice)
    shown = alice.get_task(task_id)
    covered = shown.approval_digest_contents
    canonical = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == shown.approval_digest
    assert covered["assigned_inputs"]["input_data2"]["data_id"] == b.input_id
    assert covered["assigned_outputs"] == {
        "output_result1": a.output_id,
        "output_result2": b.output_id,
    }
    assert alice.approve_task(task_id, shown.approval_digest) == shown.approval_digest

    assert bob.approve_task(task_id) == shown.approval_digest
    assert alice.get_task(task_id).status is TaskStatus.APPROVED
    bob.revoke_task_approval(task_id)
    revoked = alice.get_task(task_id)
    assert (revoked.status, revoked.approved_users) == (TaskStatus.DATA_ASSIGNED, (alice.user_id,))
    with pytest.raises(TeaclaveException, match=f"not yet approved by {bob.user_id}$"):
        alice.invoke_task(task_id)

    assert bob.approve_task(task_id) == shown.approval_digest
    alice.invoke_task(task_id)
    assert alice.get_task_result(task_id, timeout=60) == b"3 common items"
    finished = bob.get_task(task_id)
    assert finished.approval_digest == shown.approval_digest  # output cmacs are not covered
    assert set(finished.approved_users) == {alice.user_id, bob.user_id}
    with pytest.raises(TeaclaveException, match="failed to revoke approval: task is Finished"):
        bob.revoke_task_approval(task_id)


def test_the_cli_shows_approves_and_revokes_the_digest(
    platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob = platform.new_user(), platform.new_user()
    a = own_data(platform, alice, (PSI_DIR / "psi0.txt").read_bytes())
    task_id = alice.create_task(
        function_id,
        {"order": "ascending"},
        "builtin",
        [OwnerList("input_data1", [alice.user_id]), OwnerList("input_data2", [bob.user_id])],
        [OwnerList("output_result1", [alice.user_id]), OwnerList("output_result2", [bob.user_id])],
    )
    session = tmp_path / "session.json"
    code, out, _ = cli(platform, bob, session, capsys, "task", "get", task_id, "--json")
    assert code == 0
    shown = json.loads(out)
    read_by_bob = shown["approval_digest"]
    assert shown["approval_digest_contents"]["inputs_ownership"] == {
        "input_data1": [alice.user_id],
        "input_data2": [bob.user_id],
    }
    b = own_data(platform, bob, (PSI_DIR / "psi1.txt").read_bytes())
    bob.assign_data_to_task(
        task_id, [DataMap("input_data2", b.input_id)], [DataMap("output_result2", b.output_id)]
    )
    alice.assign_data_to_task(
        task_id, [DataMap("input_data1", a.input_id)], [DataMap("output_result1", a.output_id)]
    )

    code, _, err = cli(
        platform, bob, session, capsys, "task", "approve", task_id, "--digest", read_by_bob
    )
    assert code == 1
    assert "the task changed since you read it" in err
    code, out, _ = cli(platform, bob, session, capsys, "task", "get", task_id)
    assert code == 0
    [digest_line] = [line for line in out.splitlines() if line.startswith("approval_digest:")]
    current = digest_line.removeprefix("approval_digest: ")
    covered = out.split("\napproval digest covers:\n")[1].splitlines()
    [inputs] = [line for line in covered if line.startswith("  assigned_inputs: ")]
    cmac = alice.get_input_file(a.input_id).cmac.hex()
    assert f"input_data1: {{cmac: {cmac}, data_id: {a.input_id}}}" in inputs
    code, out, _ = cli(
        platform, bob, session, capsys, "task", "approve", task_id, "--digest", current
    )
    assert (code, out) == (0, f"Approved {task_id} (approval digest {current})\n")
    assert bob.get_task(task_id).approved_users == (bob.user_id,)
    code, out, _ = cli(platform, bob, session, capsys, "task", "revoke", task_id)
    assert (code, out) == (0, f"Revoked your approval of {task_id}\n")
    assert bob.get_task(task_id).approved_users == ()
