"""End-to-end benchmarks on a private platform (suite ``platform`` of ``python -m bench``).

* ``rpc``: one authenticated frontend call (GetFunction: frontend → authentication
  → access control → management → storage) — the baseline;
* ``echo_task``: a ``builtin-echo`` task from registration to result
  (RegisterFunction, CreateTask, InvokeTask, result), one client;
* ``throughput_N``: tasks per second with N concurrent clients;
* ``python_echo_task`` and ``python_throughput``: the same with an echo written
  in Python (run in the sandbox), one client, sequential tasks.

Ratios compare each figure with the baseline measured in the same run.
"""

from __future__ import annotations

import io
import platform as host
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from teaclave.cli.demo import write_config
from teaclave.client import AuthenticationClient, FrontendClient, FunctionArgument
from teaclave.config import ADMIN_PASSWORD_ENV, Config, load_config
from teaclave.services.base import simulation_key
from teaclave.services.supervisor import Supervisor

PYTHON_ECHO = b"def entrypoint(argv):\n    return argv[1]\n"


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "runs": len(samples),
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 2),
    }


class Bench:
    def __init__(self, config: Config, password: str) -> None:
        self.frontend = config.endpoints.frontend_api
        self.auth = config.endpoints.authentication_api
        self.admin, self.password = config.auth.admin_user, password
        self.key = simulation_key(config.data_path)

    def client(self) -> FrontendClient:
        with AuthenticationClient(self.auth, simulation_key=self.key) as auth:
            token = auth.user_login(self.admin, self.password)
        return FrontendClient(self.frontend, self.admin, token, simulation_key=self.key)

    @staticmethod
    def register(client: FrontendClient, executor: str = "builtin") -> str:
        return client.register_function(
            f"{executor}-echo",
            "echo",
            executor,
            payload=PYTHON_ECHO if executor == "python" else b"",
            arguments=[FunctionArgument("message", "", True)],
        )

    def echo_task(self, client: FrontendClient, executor: str = "builtin") -> None:
        function_id = self.register(client, executor)
        task_id = client.create_task(function_id, {"message": "bench"}, executor)
        client.invoke_task(task_id)
        if client.get_task_result(task_id, timeout=60) != b"bench":
            raise SystemExit("echo task returned a wrong result")

    def rpc_and_echo(
        self, client: FrontendClient, runs: int
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The ``rpc`` and ``echo_task`` figures, after warming up every path once."""
        function_id = self.register(client)
        self.echo_task(client)
        rpc = summary(timed(lambda: client.get_function(function_id), runs * 5))
        return rpc, summary(timed(lambda: self.echo_task(client), runs))

    def throughput(self, clients: int, seconds: float, executor: str = "builtin") -> float:
        done = [0] * clients
        deadline = time.monotonic() + seconds

        def work(index: int) -> None:
            with self.client() as client:
                function_id = self.register(client, executor)
                while time.monotonic() < deadline:
                    task_id = client.create_task(function_id, {"message": "t"}, executor)
                    client.invoke_task(task_id)
                    client.get_task_result(task_id, timeout=60)
                    done[index] += 1

        start = time.monotonic()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done) / (time.monotonic() - start)


def run(quick: bool) -> dict[str, object]:
    """Every figure of this suite (``quick``: fewer runs, for a smoke test)."""
    runs, seconds = (5, 1.0) if quick else (30, 10.0)
    with tempfile.TemporaryDirectory(prefix="teaclave-bench-") as tmp:
        directory = Path(tmp)
        (directory / "files").mkdir()
        config_path = write_config(directory)
        config = load_config(config_path)
        password = secrets.token_urlsafe(16)
        log = io.StringIO()
        with Supervisor(config, config_path, output=log, env={ADMIN_PASSWORD_ENV: password}):
            bench = Bench(config, password)
            with bench.client() as client:
                rpc, echo = bench.rpc_and_echo(client, runs)
                bench.echo_task(client, "python")
                python = summary(timed(lambda: bench.echo_task(client, "python"), runs))
            throughput = {n: round(bench.throughput(n, seconds), 2) for n in (1, 4, 8)}
            python_throughput = round(bench.throughput(1, seconds, "python"), 2)
    base = rpc["median_ms"]
    return {
        "machine": f"{host.machine()}, {host.python_implementation()} {host.python_version()}",
        "rpc": rpc,
        "echo_task": {**echo, "ratio_to_rpc": round(echo["median_ms"] / base, 1)},
        "throughput_tasks_per_s": {f"{n}_clients": v for n, v in throughput.items()},
        "throughput_ratio_8_to_1": round(throughput[8] / throughput[1], 2),
        "python_echo_task": {
            **python,
            "ratio_to_builtin_echo": round(python["median_ms"] / echo["median_ms"], 2),
        },
        "python_throughput_tasks_per_s": python_throughput,
        "python_throughput_ratio_to_builtin": round(python_throughput / throughput[1], 2),
    }
