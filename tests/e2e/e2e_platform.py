"""The whole platform, one process per service, for the end-to-end tests.

Tests may kill or restart services (the supervisor brings them back), but
must leave the platform serving.
"""

import io
import os
import secrets
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import children, gone, is_spare, unread_input
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

    def spare(self) -> int:
        """The zygote's spare: the process the next task will take, forked ahead and
        waiting for its task, having read all it was given."""
        found: list[int] = []

        def one() -> bool:
            zygote = self.zygote()
            found[:] = [c for c in children(zygote) if waiting(c)] if zygote else []
            return len(found) == 1

        wait_for(one, what="the zygote's spare task process")
        return found[0]

    def next_task(self) -> Callable[[], int]:
        """A function that waits until the next task took its process and gives its pid.

        The next task takes the spare (:meth:`spare`): its task is then written to the
        spare's stdin (read, unless the spare is held), or the spare ended.
        """
        taker = self.spare()

        def wait() -> int:
            wait_for(lambda: not waiting(taker), what="a task to take the spare task process")
            return taker

        return wait

    def hold_next_task(self) -> Callable[[], int]:
        """Freeze (SIGSTOP) the next task's process now, before the task takes it: its
        task stays Running until canceled. Returns :meth:`next_task`'s function."""
        os.kill(self.spare(), signal.SIGSTOP)
        return self.next_task()


def waiting(pid: int) -> bool:
    """Whether ``pid`` is a spare task process with nothing unread on its stdin."""
    return is_spare(pid) and unread_input(pid) == 0


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
