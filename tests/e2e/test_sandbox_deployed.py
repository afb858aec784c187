"""The escape corpus as deployed: each attempt is a Python function run through the whole
platform, started by `teaclave serve` from / (as a service manager starts it) and from the
directory holding its data directory (as a user in a terminal would)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import site
import socket
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from e2e_helpers import run_task
from e2e_platform import wait_for

from teaclave.cli.demo import write_config
from teaclave.client import AuthenticationClient, FrontendClient, FunctionArgument, TaskFailed
from teaclave.config import ADMIN_PASSWORD_ENV, Config, load_config
from teaclave.services.base import simulation_key
from teaclave.services.storage import DB_FILE

ROOT = Path(__file__).resolve().parents[2]
CORPUS_FILE = ROOT / "tests" / "sandbox" / "sandbox_corpus.py"
LIMITS = {"teaclave.cpu_secs": 2, "teaclave.wall_secs": 10, "teaclave.memory_mb": 256}


def _load_corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sandbox_corpus", CORPUS_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus()


@dataclass
class Deployment:
    """A platform run by `teaclave serve` from ``start``; its config lives in ``home``."""

    start: Path
    home: Path
    config: Config
    process: subprocess.Popen[bytes]
    client: FrontendClient
    function_id: str

    def execution_pid(self) -> int:
        """The execution service's process (the platform side of every sandbox)."""
        found: list[int] = []

        def started() -> bool:
            pid = self.process.pid
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                with contextlib.suppress(OSError):
                    if b"execution" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"):
                        found.append(int(child))
            return bool(found)

        wait_for(started, 60, "the execution service to start")
        return found[0]

    def run(self, arguments: dict[str, object]) -> str:
        """The corpus function's summary for ``arguments``, or why its task failed."""
        every = {"attempt": "", "context": "", "probe": "", **arguments, **LIMITS}
        task_id = run_task(self.client, self.function_id, every, {}, {}, "python")
        try:
            return self.client.get_task_result(task_id, timeout=120).decode()
        except TaskFailed as failed:
            return f"failed: {failed.reason}"


def _serve(start: Path, home: Path) -> tuple[Config, subprocess.Popen[bytes], str]:
    """`teaclave serve` from ``start``, its config and relative data directory in ``home``."""
    config_path = write_config(home)
    text = config_path.read_text()
    # The default layout of a user's installation: "teaclave-data" beside the config.
    config_path.write_text(re.sub(r"(?m)^data_dir = .*$", 'data_dir = "teaclave-data"', text))
    config = load_config(config_path)
    assert config.data_path == home / "teaclave-data"
    (home / "files").mkdir()
    teaclave = Path(sys.executable).parent / "teaclave"
    password = secrets.token_urlsafe(16)
    with (home / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [str(teaclave), "serve", "--config", str(config_path)],
            cwd=start,
            env={**os.environ, ADMIN_PASSWORD_ENV: password},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = config.endpoints.frontend_api.rsplit(":", 1)
    wait_for(lambda: _accepts(endpoint[0], int(endpoint[1])), 60, "the frontend to listen")
    return config, process, password


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _login(config: Config, password: str) -> FrontendClient:
    key = simulation_key(config.data_path)
    user, user_password = f"corpus-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    with AuthenticationClient(config.endpoints.authentication_api, simulation_key=key) as auth:
        auth.user_login(config.auth.admin_user, password)
        auth.user_register(user, user_password, "PlatformAdmin", "")
        token = auth.user_login(user, user_password)
    return FrontendClient(config.endpoints.frontend_api, user, token, simulation_key=key)


@pytest.fixture(scope="module", params=["from-root", "from-data-parent"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("deployed")
    start = Path("/") if request.param == "from-root" else home
    config, process, password = _serve(start, home)
    try:
        client = _login(config, password)
        function_id = client.register_function(
            "sandbox-corpus",
            "the escape corpus",
            "python",
            payload=CORPUS_FILE.read_bytes(),
            arguments=[FunctionArgument(key) for key in ("attempt", "context", "probe")],
        )
        yield Deployment(start, home, config, process, client, function_id)
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def ctx(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The attempts' aims in this deployment, as JSON; listeners on the host."""
    root = tmp_path_factory.mktemp("aims")
    scratch, public = root / "scratch", root / "tmp"
    scratch.mkdir(mode=0o700)
    public.mkdir()
    os.chmod(public, 0o777 | stat.S_ISVTX)
    other = deployment.home / "files" / "other-task-output.txt"
    other.write_text(corpus.MARKER)
    data = deployment.config.data_path
    stdlib = sysconfig.get_path("stdlib")
    with corpus.listeners() as (tcp_port, udp_port, abstract):
        yield corpus.Context(
            spawner=deployment.execution_pid(),
            data_dir=str(data),
            sealing_key=str(data / "simulation" / "sealing.key"),
            database=str(data / DB_FILE),
            other_task=str(other),
            scratch=str(scratch),
            public_tmp=str(public),
            start_dir=str(deployment.start),
            import_dirs=(*site.getsitepackages(), str(ROOT / "src")),
            hidden_dir=os.path.join(stdlib, "site-packages"),
            other_package=str(Path(sys.modules["grpc"].__file__ or "").resolve()),
            device=next(d for d in ("/dev/kvm", "/dev/console") if os.path.exists(d)),
            tcp_port=tcp_port,
            udp_port=udp_port,
            abstract_unix=abstract,
        ).to_json()


@pytest.mark.parametrize("attempt", [a.name for a in corpus.CORPUS])
def test_attempt_fails_as_deployed(attempt: str, deployment: Deployment, ctx: str) -> None:
    outcome = deployment.run({"attempt": attempt, "context": ctx})
    assert outcome != "escaped", f"{attempt} escaped the platform started from {deployment.start}"
    assert f"code {corpus.ESCAPED_EXIT} " not in outcome
    context = corpus.Context.from_json(ctx)
    planted = [
        str(path)
        for directory in (context.data_dir, context.scratch, context.public_tmp)
        for path in Path(directory).iterdir()
        if path.name.startswith("planted")
    ]
    assert planted == []


def test_a_task_reads_only_the_interpreter_and_allowed_packages(
    deployment: Deployment, ctx: str
) -> None:
    """Everything a function can read, wherever the platform was started from."""
    modules = deployment.config.execution.python_modules
    allowed, hidden = corpus.allowed_roots(modules)
    seeds = corpus.host_seeds([*corpus.Context.from_json(ctx).paths(), *allowed])
    request = corpus.pack({"seeds": seeds, "allowed": allowed, "hidden": hidden})
    found = json.loads(deployment.run({"probe": request}))
    assert (found["outside"], found["examples"]) == (0, [])
    assert found["readable"] > 1000  # the standard library and numpy: the probe works
