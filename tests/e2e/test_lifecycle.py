"""The task life cycle end to end, over the public API of a running platform."""

import base64

import pytest
from e2e_helpers import own_data, psi_task, register_echo, register_psi
from e2e_platform import Platform, wait_for
from teaclave_fixtures import PSI_DIR

from teaclave.client import (
    DataMap,
    InvalidArgument,
    OwnerList,
    PermissionDenied,
    TaskCanceled,
    TaskStatus,
    TeaclaveException,
)

PSI0 = (PSI_DIR / "psi0.txt").read_bytes()
PSI1 = (PSI_DIR / "psi1.txt").read_bytes()


@pytest.mark.parametrize("schema", ["aes-gcm-128", "aes-gcm-256"])
def test_two_party_psi(platform: Platform, schema: str) -> None:
    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob = platform.new_user(), platform.new_user()
    a, b = own_data(platform, alice, PSI0, schema), own_data(platform, bob, PSI1, schema)
    task_id = psi_task(function_id, a, b)
    alice.approve_task(task_id)
    with pytest.raises(TeaclaveException, match="failed to invoke task"):
        alice.invoke_task(task_id)  # bob has not approved yet
    bob.approve_task(task_id)
    alice.invoke_task(task_id)

    for party, expected in ((a, b"0101010"), (b, b"01101")):
        outputs = party.client.get_task_outputs(task_id, timeout=60)
        assert outputs.return_value == b"3 common items"
        name = "output_result1" if party is a else "output_result2"
        assert party.read_output(outputs.tags_map[name]) == expected
        assert party.client.get_output_file(party.output_id).cmac == outputs.tags_map[name]
    task = alice.get_task(task_id)
    assert task.status is TaskStatus.FINISHED
    assert set(task.participants) == {alice.user_id, bob.user_id}


def test_single_participant_echo_runs_without_approval(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_echo(admin)
    user = platform.new_user()
    task_id = user.create_task(function_id, {"message": "Hello From Teaclave!"}, "builtin")
    user.invoke_task(task_id)
    assert user.get_task_result(task_id, timeout=60) == b"Hello From Teaclave!"


def test_raw_inputs_from_data_urls(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob = platform.new_user(), platform.new_user()
    owned = []
    for client, text in ((alice, PSI0), (bob, PSI1)):
        url = "data:text/plain;base64," + base64.b64encode(text).decode()
        input_id = client.register_input_file(url, "raw", b"", b"", bytes(16))
        template = own_data(platform, client, b"unused")
        owned.append((client, input_id, template))
    (_, a_in, a), (_, b_in, b) = owned
    a.input_id, b.input_id = a_in, b_in
    task_id = psi_task(function_id, a, b)
    alice.approve_task(task_id)
    bob.approve_task(task_id)
    alice.invoke_task(task_id)
    outputs = bob.get_task_outputs(task_id, timeout=60)
    assert b.read_output(outputs.tags_map["output_result2"]) == b"01101"


def test_state_machine_rejections(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob, eve = platform.new_user(), platform.new_user(), platform.new_user()
    a, b = own_data(platform, alice, PSI0), own_data(platform, bob, PSI1)
    e = own_data(platform, eve, PSI1)
    task_id = alice.create_task(
        function_id,
        {"order": "ascending"},
        "builtin",
        [OwnerList("input_data1", [a.user_id]), OwnerList("input_data2", [b.user_id])],
        [OwnerList("output_result1", [a.user_id]), OwnerList("output_result2", [b.user_id])],
    )
    with pytest.raises(PermissionDenied):  # not a participant
        eve.get_task(task_id)
    with pytest.raises(PermissionDenied):  # not a participant
        eve.assign_data_to_task(task_id, [DataMap("input_data2", e.input_id)], [])
    with pytest.raises(PermissionDenied):  # alice does not own bob's slot
        alice.assign_data_to_task(task_id, [DataMap("input_data2", a.input_id)], [])
    with pytest.raises(TeaclaveException, match="failed to approve task"):
        alice.approve_task(task_id)  # data not assigned yet
    alice.assign_data_to_task(
        task_id, [DataMap("input_data1", a.input_id)], [DataMap("output_result1", a.output_id)]
    )
    with pytest.raises(PermissionDenied):  # already assigned
        alice.assign_data_to_task(task_id, [DataMap("input_data1", a.input_id)], [])
    bob.assign_data_to_task(
        task_id, [DataMap("input_data2", b.input_id)], [DataMap("output_result2", b.output_id)]
    )
    assert alice.get_task(task_id).status is TaskStatus.DATA_ASSIGNED
    alice.approve_task(task_id)
    bob.approve_task(task_id)
    assert alice.get_task(task_id).status is TaskStatus.APPROVED
    with pytest.raises(PermissionDenied):  # only the creator invokes
        bob.invoke_task(task_id)
    alice.invoke_task(task_id)
    alice.get_task_result(task_id, timeout=60)
    with pytest.raises(TeaclaveException, match="already been canceled"):
        alice.cancel_task(task_id)  # ended tasks cannot be canceled

    # A written output is never written again (no AES-GCM nonce reuse).
    again = psi_task_attempt(function_id, alice, bob)
    with pytest.raises(PermissionDenied):
        alice.assign_data_to_task(
            again, [DataMap("input_data1", a.input_id)], [DataMap("output_result1", a.output_id)]
        )


def test_an_output_is_held_by_one_staged_or_running_task(platform: Platform) -> None:
    """Two tasks share alice's and bob's outputs: while the first runs, the second cannot be
    invoked nor an output moved (audited); canceled before its upload, the first frees them."""
    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob = platform.new_user(), platform.new_user()
    a, b = own_data(platform, alice, PSI0), own_data(platform, bob, PSI1)
    first, second = psi_task(function_id, a, b), psi_task(function_id, a, b)
    for task_id in (first, second):
        alice.approve_task(task_id)
        bob.approve_task(task_id)
    held = platform.hold_next_task()  # stopped as it starts: long before any upload
    alice.invoke_task(first)
    held()
    wait_for(lambda: alice.get_task(first).status is TaskStatus.RUNNING, what="Running")
    reserved = "is reserved by a staged or running task"
    with pytest.raises(TeaclaveException) as invoked:
        alice.invoke_task(second)
    assert invoked.value.message == f"failed to invoke task: output 'output_result1' {reserved}"
    with pytest.raises(PermissionDenied) as moved:
        bob.update_output_file(b.output_id, (platform.files / "elsewhere.enc").as_uri())
    assert moved.value.message == (
        f"permission denied: the output {reserved}; register a new output instead"
    )
    with platform.admin() as admin:

        def audited() -> bool:
            refusals = {
                e.message
                for user in (alice, bob)
                for e in admin.query_audit_logs(f"user:{user.user_id} result:false", 10)
            }
            return refusals == {
                f"invoke_task:{invoked.value.message}",
                f"update_output_file:{moved.value.message}",
            }

        wait_for(audited, timeout=10, what="audit entries of the refusals")
    alice.cancel_task(first)
    with pytest.raises(TaskCanceled):
        alice.get_task_result(first, timeout=30)
    alice.invoke_task(second)  # the outputs are free again: the first never uploaded
    outputs = bob.get_task_outputs(second, timeout=60)
    assert b.read_output(outputs.tags_map["output_result2"]) == b"01101"


def psi_task_attempt(function_id: str, alice, bob) -> str:
    return alice.create_task(
        function_id,
        {"order": "ascending"},
        "builtin",
        [OwnerList("input_data1", [alice.user_id]), OwnerList("input_data2", [bob.user_id])],
        [OwnerList("output_result1", [alice.user_id]), OwnerList("output_result2", [bob.user_id])],
    )


def test_usage_quota_is_enforced(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_echo(admin, quota=1)
        user = platform.new_user()
        first = user.create_task(function_id, {"message": "one"}, "builtin")
        user.invoke_task(first)
        assert user.get_task_result(first, timeout=60) == b"one"
        second = user.create_task(function_id, {"message": "two"}, "builtin")
        with pytest.raises(TeaclaveException, match="quota has been used up"):
            user.invoke_task(second)
        usage = admin.get_function_usage_stats(function_id)
        assert (usage.function_quota, usage.current_usage) == (1, 1)


def test_arguments_are_checked(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_echo(admin)
    user = platform.new_user()
    with pytest.raises(InvalidArgument, match="invalid task"):
        user.create_task(function_id, {"message": "x", "extra": 1}, "builtin")
    with pytest.raises(InvalidArgument, match="invalid task"):
        user.create_task(function_id, {}, "builtin")
