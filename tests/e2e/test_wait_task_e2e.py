"""Waiting for a result: the SDK waits with WaitTask, and the audit log shows it."""

from e2e_helpers import register_echo
from e2e_platform import Platform, wait_for

from teaclave.client import TaskStatus


def test_the_sdk_waits_for_the_result_without_polling(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_echo(admin)
        user = platform.new_user()
        task_id = user.create_task(function_id, {"message": "waited"}, "builtin")
        user.invoke_task(task_id)
        assert user.get_task_result(task_id, timeout=60) == b"waited"
        assert user.wait_task(task_id, 0).status is TaskStatus.FINISHED
        entries: list[str] = []

        def audited() -> bool:
            entries[:] = [e.message for e in admin.query_audit_logs(f"user:{user.user_id}", 100)]
            return entries.count("wait_task") >= 2

        wait_for(audited, timeout=10, what="the audit entries of WaitTask")
    assert "get_task" not in entries  # no GetTask poll
