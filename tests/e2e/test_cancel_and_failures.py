"""Cancel in every state; executors and task processes dying; corrupt inputs."""

import os
import signal

import pytest
from e2e_helpers import echo_task, own_data, psi_task, register_psi, slot_held
from e2e_platform import EXECUTOR_TIMEOUT, Platform, alive, wait_for
from processes import children
from teaclave_fixtures import PSI_DIR

from teaclave.client import FrontendClient, TaskCanceled, TaskFailed, TaskStatus

PSI0 = (PSI_DIR / "psi0.txt").read_bytes()
PSI1 = (PSI_DIR / "psi1.txt").read_bytes()


def status(client: FrontendClient, task_id: str) -> TaskStatus:
    return client.get_task(task_id).status


def test_cancel_created_task(platform: Platform) -> None:
    user, task_id = echo_task(platform)
    user.cancel_task(task_id)
    assert status(user, task_id) is TaskStatus.CANCELED
    with pytest.raises(TaskCanceled, match="Task canceled"):
        user.get_task_result(task_id, timeout=10)


def test_cancel_staged_task(platform: Platform) -> None:
    user, task_id = echo_task(platform)
    with slot_held(platform):  # no executor claims it
        user.invoke_task(task_id)
        assert status(user, task_id) is TaskStatus.STAGED
        user.cancel_task(task_id)
        assert status(user, task_id) is TaskStatus.CANCELED
    with pytest.raises(TaskCanceled, match="Task Canceled by the user"):
        user.get_task_result(task_id, timeout=10)


def test_cancel_running_task_stops_only_that_task(platform: Platform) -> None:
    user, task_id = echo_task(platform)
    executor = platform.supervisor.pid("execution")
    frozen = platform.hold_next_task()
    user.invoke_task(task_id)
    worker = frozen()
    wait_for(lambda: status(user, task_id) is TaskStatus.RUNNING, what="Running")
    user.cancel_task(task_id)
    with pytest.raises(TaskCanceled, match="Task Canceled by the user"):
        user.get_task_result(task_id, timeout=30)
    wait_for(lambda: not alive(worker), what="task process killed")
    assert platform.supervisor.pid("execution") == executor  # the executor kept serving
    again_user, again = echo_task(platform, "still serving")
    again_user.invoke_task(again)
    assert again_user.get_task_result(again, timeout=30) == b"still serving"


def test_killed_executor_fails_its_task(platform: Platform) -> None:
    user, task_id = echo_task(platform)
    executor = platform.supervisor.pid("execution")
    zygote = platform.zygote()
    assert executor is not None
    assert zygote is not None
    # kill -9 the executor mid-task: its task process is frozen before the task comes.
    held = platform.hold_next_task()
    user.invoke_task(task_id)
    worker = held()
    os.kill(executor, signal.SIGKILL)
    with pytest.raises(TaskFailed, match="Runtime Error: Executor Timeout"):
        user.get_task_result(task_id, timeout=EXECUTOR_TIMEOUT * 5)
    wait_for(lambda: not alive(worker), what="orphaned task process exit")
    wait_for(lambda: not alive(zygote), what="the zygote to die with the executor")
    # The supervisor restarted the executor, which serves new tasks.
    wait_for(lambda: platform.supervisor.pid("execution") not in (None, executor))
    again_user, again = echo_task(platform, "after the crash")
    again_user.invoke_task(again)
    assert again_user.get_task_result(again, timeout=30) == b"after the crash"


SLEEPER = b"import time\ndef entrypoint(argv):\n    time.sleep(3600)\n"


def test_killed_zygote_fails_its_task_and_another_takes_over(platform: Platform) -> None:
    user = platform.new_user("PlatformAdmin")
    function_id = user.register_function("sleeper", "sleeps", "python", payload=SLEEPER)
    task_id = user.create_task(function_id, {}, "python")
    executor, zygote = platform.supervisor.pid("execution"), platform.zygote()
    assert zygote is not None
    started = platform.next_task()
    user.invoke_task(task_id)
    task_process = started()
    # Once it read its task (and forked the function's sandbox): before, the executor would
    # ask the next zygote for another task process, the task would run on and never end.
    wait_for(lambda: children(task_process) != [], what="the task process to run its task")
    os.kill(zygote, signal.SIGKILL)
    with pytest.raises(TaskFailed) as failed:
        user.get_task_result(task_id, timeout=30)
    assert failed.value.reason == "executor process lost: the zygote was killed by SIGKILL"
    wait_for(lambda: not alive(task_process), what="the task process to die with its zygote")
    assert platform.supervisor.pid("execution") == executor  # the executor kept serving
    wait_for(lambda: platform.zygote() not in (None, zygote), what="a new zygote")
    again_user, again = echo_task(platform, "after the zygote")
    again_user.invoke_task(again)
    assert again_user.get_task_result(again, timeout=30) == b"after the zygote"


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda data: data[:-1], "cmac mismatch"),  # truncated
        (lambda data: bytes([data[0] ^ 1]) + data[1:], "input 'input_data2'"),  # tampered
        (lambda data: data[:8], "input 'input_data2'"),  # shorter than a tag
    ],
)
def test_corrupt_input_fails_the_task_and_writes_nothing(
    platform: Platform, mangle, reason: str
) -> None:
    from e2e_helpers import encrypt

    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob = platform.new_user(), platform.new_user()
    a = own_data(platform, alice, PSI0)
    genuine_key = os.urandom(16)
    iv = os.urandom(12)
    data, cmac = encrypt(genuine_key, iv, PSI1)
    path = platform.files / f"corrupt-{os.urandom(4).hex()}.enc"
    path.write_bytes(mangle(data))
    b = own_data(platform, bob, PSI1)
    b.input_id = bob.register_input_file(path.as_uri(), "aes-gcm-128", genuine_key, iv, cmac)
    task_id = psi_task(function_id, a, b)
    alice.approve_task(task_id)
    bob.approve_task(task_id)
    alice.invoke_task(task_id)
    with pytest.raises(TaskFailed, match=reason):
        alice.get_task_result(task_id, timeout=30)
    assert not a.output_path.exists()
    assert not b.output_path.exists()
    assert status(alice, task_id) is TaskStatus.FINISHED  # Teaclave: Finished with Err
