"""Everything the platform acknowledged survives a restart of any service."""

import collections
import signal
import threading

import pytest
from e2e_helpers import own_data, psi_task, register_echo, register_psi, slot_held
from e2e_platform import Platform, wait_for
from teaclave_fixtures import PSI_DIR

from teaclave.client import FrontendClient, ServiceUnavailable, TaskStatus, TeaclaveException
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


@pytest.mark.parametrize("service", SERVICES)
def test_a_valid_token_meets_an_outage_never_a_bad_credential(
    platform: Platform, service: str
) -> None:
    """Calls of three clients with valid tokens go on while ``service`` is killed (-9) and
    the supervisor starts it again: each one succeeds or fails UNAVAILABLE, never
    UNAUTHENTICATED (nor CANCELLED, as calls on a channel closed under them did)."""
    clients = [platform.admin() for _ in range(3)]
    function_id = register_echo(clients[0])
    answered: collections.Counter[str] = collections.Counter()
    stop = threading.Event()

    def calls(client: FrontendClient) -> None:
        while not stop.is_set():
            try:
                client.get_function(function_id)
            except TeaclaveException as exc:
                answered[exc.status.name] += 1
            else:
                answered["OK"] += 1

    callers = [threading.Thread(target=calls, args=(client,)) for client in clients]
    for caller in callers:
        caller.start()
    try:
        wait_for(lambda: answered["OK"] >= 3, what="calls answered")
        killed = platform.supervisor.pid(service)
        platform.supervisor.kill(service, signal.SIGKILL)
        wait_for(lambda: platform.supervisor.pid(service) not in (None, killed), what="restart")
        after = answered["OK"]
        wait_for(lambda: answered["OK"] >= after + 3, what=f"calls answered after {service}")
    finally:
        stop.set()
        for caller in callers:
            caller.join()
        for client in clients:
            client.close()
    assert set(answered) <= {"OK", "UNAVAILABLE"}, answered
