"""Everything the platform acknowledged survives a restart of any service."""

import signal

import pytest
from e2e_helpers import own_data, psi_task, register_echo, register_psi, slot_held
from e2e_platform import Platform, wait_for
from teaclave_fixtures import PSI_DIR

from teaclave.client import FrontendClient, ServiceUnavailable, TaskStatus
from teaclave.config import SERVICES

PSI0 = (PSI_DIR / "psi0.txt").read_bytes()
PSI1 = (PSI_DIR / "psi1.txt").read_bytes()


def test_task_survives_a_restart_of_each_service(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob = platform.new_user(), platform.new_user()
    a, b = own_data(platform, alice, PSI0), own_data(platform, bob, PSI1)
    task_id = psi_task(function_id, a, b)
    alice.approve_task(task_id)
    before = alice.get_task(task_id)

    for service in SERVICES:
        platform.supervisor.restart(service)
        # Same tokens, same clients: they re-dial and re-verify the restarted endpoints.
        assert alice.get_task(task_id) == before, f"task changed by restarting {service}"

    bob.approve_task(task_id)
    alice.invoke_task(task_id)
    outputs = bob.get_task_outputs(task_id, timeout=60)
    assert outputs.return_value == b"3 common items"
    assert b.read_output(outputs.tags_map["output_result2"]) == b"01101"


@pytest.mark.parametrize("service", ["storage", "scheduler"])
def test_staged_task_survives_restart(platform: Platform, service: str) -> None:
    with platform.admin() as admin:
        function_id = register_echo(admin)
    user = platform.new_user()
    task_id = user.create_task(function_id, {"message": "queued"}, "builtin")
    with slot_held(platform):  # no executor claims it
        user.invoke_task(task_id)
        assert user.get_task(task_id).status is TaskStatus.STAGED
        platform.supervisor.restart(service)
        assert user.get_task(task_id).status is TaskStatus.STAGED
    assert user.get_task_result(task_id, timeout=60) == b"queued"


def test_kill_9_of_storage_loses_nothing_acknowledged(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_echo(admin)
        storage = platform.supervisor.pid("storage")
        assert storage is not None
        platform.supervisor.kill("storage", signal.SIGKILL)
        # During the outage calls fail as UNAVAILABLE (never as bad credentials) ...
        wait_for(lambda: answers(admin, function_id), what="storage back")
        # ... and once the supervisor has restarted it, the acknowledged function is there.
        assert admin.get_function(function_id).name == "builtin-echo"
    assert platform.supervisor.pid("storage") != storage


def answers(client: FrontendClient, function_id: str) -> bool:
    try:
        client.get_function(function_id)
    except ServiceUnavailable:
        return False
    return True
