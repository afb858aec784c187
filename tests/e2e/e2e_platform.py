"""The whole platform, one process per service, for the end-to-end tests.

Tests may kill or restart services (the supervisor brings them back), but
must leave the platform serving.
"""

import io
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import children, gone
from waiting import wait_until

from teaclave.cli.demo import write_config
from teaclave.client import AuthenticationClient, FrontendClient
from teaclave.config import ADMIN_PASSWORD_ENV, Config, load_config
from teaclave.services.base import simulation_key
from teaclave.services.supervisor import Supervisor

HEARTBEAT_INTERVAL = 0.1
EXECUTOR_TIMEOUT = 3.0


@dataclass
class Platform:
    """A running platform and ways to reach, disturb and inspect it."""

    config: Config
    supervisor: Supervisor
    files: Path
    admin_password: str
    log: io.StringIO

    @property
    def simulation_key(self) -> str:
        return simulation_key(self.config.data_path)

    def auth(self) -> AuthenticationClient:
        return AuthenticationClient(
            self.config.endpoints.authentication_api, simulation_key=self.simulation_key
        )

    def login(self, user_id: str, password: str) -> FrontendClient:
        with self.auth() as auth:
            token = auth.user_login(user_id, password)
        return FrontendClient(
            self.config.endpoints.frontend_api, user_id, token, simulation_key=self.simulation_key
        )

    def admin(self) -> FrontendClient:
        return self.login(self.config.auth.admin_user, self.admin_password)

    def new_user(self, role: str = "DataOwner", attribute: str = "e2e") -> FrontendClient:
        """A fresh user registered by the admin, logged in."""
        user_id, password = f"user-{secrets.token_hex(4)}", secrets.token_urlsafe(12)
        with self.auth() as auth:
            auth.user_login(self.config.auth.admin_user, self.admin_password)
            auth.user_register(user_id, password, role, attribute)
        return self.login(user_id, password)

    def zygote(self) -> int | None:
        """The pid of the execution service's zygote, if it runs."""
        executor = self.supervisor.pid("execution")
        for pid in children(executor) if executor else []:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"teaclave.executor.zygote" in cmdline and alive(pid):
                return pid
        return None

    def task_processes(self) -> list[int]:
        """Pids of the task processes of the execution service (children of its zygote)."""
        zygote = self.zygote()
        return [pid for pid in children(zygote) if alive(pid)] if zygote else []

    def on_next_task(self, action: Callable[[int], None]) -> Callable[[], int]:
        """Call ``action(pid)`` as soon as the next task process starts.

        Returns a function that waits for that to have happened and gives the pid.
        A task process starts with a fork of the zygote, and a built-in task may end
        a few milliseconds later: the watcher reads only the zygote's list of children,
        as often as it can.
        """
        seen = set(self.task_processes())
        caught: list[int] = []

        def watch() -> None:
            deadline = time.monotonic() + 30
            zygote = None
            while time.monotonic() < deadline:
                if zygote is None or not alive(zygote):
                    zygote = self.zygote()
                    time.sleep(0.001)
                    continue
                for pid in set(children(zygote)) - seen:
                    action(pid)
                    caught.append(pid)
                    return
                time.sleep(0)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()

        def wait() -> int:
            thread.join(35)
            assert caught, "no task process started"
            return caught[0]

        return wait

    def hold_next_task(self) -> Callable[[], int]:
        """Freeze (SIGSTOP) the next task process: its task stays Running until canceled."""
        return self.on_next_task(lambda pid: os.kill(pid, signal.SIGSTOP))


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    return not gone(pid)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    wait_until(predicate, what or str(predicate), timeout)


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    files = root / "files"
    files.mkdir()
    # One task at a time: the access matrix keeps a task Staged by holding the one slot.
    config_path = write_config(
        root,
        heartbeat_interval_secs=HEARTBEAT_INTERVAL,
        executor_timeout_secs=EXECUTOR_TIMEOUT,
        max_concurrent_tasks=1,
    )
    config = load_config(config_path)
    password = secrets.token_urlsafe(16)
    log = io.StringIO()
    supervisor = Supervisor(
        config,
        config_path,
        output=log,
        env={ADMIN_PASSWORD_ENV: password},
        first_backoff=0.1,
        max_restarts=50,
    )
    with supervisor:
        yield Platform(config, supervisor, files, password, log)
