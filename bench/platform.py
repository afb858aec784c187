"""End-to-end benchmarks on a private platform (suite ``platform`` of ``python -m bench``).

The platform runs as shipped: every service its own process, the default
configuration (heartbeat, task slots), simulated TEE, SQLite, all on loopback.

* ``rpc``: one authenticated frontend call (GetFunction: frontend → authentication,
  frontend → management → storage; access control's answer is kept) — the baseline;
* ``echo_task``: a ``builtin-echo`` task from CreateTask to its result
  (CreateTask, InvokeTask, WaitTask), one client, p50 and p90 as ratios to ``rpc``;
* ``python_echo_task``: the same with an echo written in Python (run in the sandbox);
* ``throughput_tasks_per_s``: tasks per second with 1, 4 and 8 concurrent clients,
  each running one task after another, for both echoes;
* ``cpu_ms_per_echo_task_8_clients``: the CPU time one builtin echo task costs each
  process under 8 clients (read from ``/proc``).
"""

from __future__ import annotations

import io
import os
import platform as host
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from teaclave.cli.demo import write_config
from teaclave.client import AuthenticationClient, FrontendClient, FunctionArgument
from teaclave.config import ADMIN_PASSWORD_ENV, SERVICES, Config, load_config
from teaclave.services.base import simulation_key
from teaclave.services.supervisor import Supervisor

PYTHON_ECHO = b"def entrypoint(argv):\n    return argv[1]\n"
EXECUTORS = ("builtin", "python")
CLIENTS = (1, 4, 8)
RPCS_PER_ROUND = 5
"""RPCs timed in each round of the latency figures (beside one task of each executor)."""
RPCS_UNTIMED = 10
"""RPCs made before those timed in a round: after a pause the first ones are slower (the
first ~10 ms, the second ~25 % slower than the tenth, on this machine)."""
SETTLE_SECS = 0.1
"""The pause before each round of the latency figures: what the last task left to do (its
process's end, the next spare's fork) is done by then."""


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

    @staticmethod
    def echo_task(client: FrontendClient, function_id: str, executor: str = "builtin") -> str:
        """One echo task from CreateTask to its result (InvokeTask, WaitTask); its id."""
        task_id = client.create_task(function_id, {"message": "bench"}, executor)
        client.invoke_task(task_id)
        if client.get_task_result(task_id, timeout=60) != b"bench":
            raise SystemExit("echo task returned a wrong result")
        return task_id

    def latencies(self, client: FrontendClient, runs: int) -> dict[str, dict[str, float]]:
        """The ``rpc``, ``builtin_echo`` and ``python_echo`` samples' summaries, taken in
        ``runs`` rounds, so that the machine's drift during the run (10-30 % on this
        one) weighs on the baseline and the tasks alike. A round begins on a quiet
        platform (:data:`SETTLE_SECS` after the last call); it times
        :data:`RPCS_PER_ROUND` RPCs one after another, after :data:`RPCS_UNTIMED`
        untimed ones, then one task of each executor, each right after an untimed one
        of the same executor, as in a stream of such tasks (which finds the spare
        process with its sandbox forked ahead, and the last task's process ending
        beside it)."""
        functions = {executor: self.register(client, executor) for executor in EXECUTORS}
        rpc = partial(client.get_function, functions["builtin"])
        tasks = {
            f"{executor}_echo": partial(self.echo_task, client, function_id, executor)
            for executor, function_id in functions.items()
        }
        samples: dict[str, list[float]] = {"rpc": [], **{name: [] for name in tasks}}
        for _ in range(runs):
            time.sleep(SETTLE_SECS)
            timed(rpc, RPCS_UNTIMED)
            samples["rpc"] += timed(rpc, RPCS_PER_ROUND)
            for name, task in tasks.items():
                task()
                samples[name] += timed(task, 1)
        return {name: summary(taken) for name, taken in samples.items()}

    def throughput(self, clients: int, seconds: float, executor: str = "builtin") -> float:
        """Tasks per second that ``clients`` concurrent clients get, each one task at a time."""
        tasks, elapsed = self._run_clients(clients, seconds, executor)
        return tasks / elapsed

    def _run_clients(self, clients: int, seconds: float, executor: str) -> tuple[int, float]:
        """Echo tasks that ``clients`` clients ran one after another for ``seconds``: how
        many, and in how many seconds."""
        done = [0] * clients
        # One login after another: the login throttle admits few concurrent attempts
        # on one account from one address.
        sessions = [self.client() for _ in range(clients)]
        function_id = self.register(sessions[0], executor)
        deadline = time.monotonic() + seconds

        def work(index: int) -> None:
            with sessions[index] as client:
                while time.monotonic() < deadline:
                    self.echo_task(client, function_id, executor)
                    done[index] += 1

        start = time.monotonic()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done), time.monotonic() - start

    def cpu_per_task(
        self, supervisor: Supervisor, clients: int, seconds: float
    ) -> dict[str, float]:
        """CPU milliseconds per builtin echo task of each service, of the task processes
        (the zygote with its reaped children) and of this client, with ``clients``
        clients: where the cores go when they are the limit."""
        pids = {name: supervisor.pid(name) or 0 for name in SERVICES}
        zygotes = _children(pids["execution"])
        before = {name: _cpu_seconds([pid]) for name, pid in pids.items()}
        before["task processes"] = _cpu_seconds(zygotes)
        own = os.times()
        tasks, _ = self._run_clients(clients, seconds, "builtin")
        spent = {name: _cpu_seconds([pid]) - before[name] for name, pid in pids.items()}
        spent["task processes"] = _cpu_seconds(zygotes) - before["task processes"]
        now = os.times()
        spent["client"] = now.user + now.system - own.user - own.system
        return {name: round(1000 * value / tasks, 2) for name, value in spent.items()}


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time of ``pids`` and of their reaped children (``/proc/PID/stat``)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (any of its threads may have started them)."""
    return [
        int(child)
        for path in Path(f"/proc/{pid}/task").glob("*/children")
        for child in path.read_text().split()
    ]


def run(quick: bool) -> dict[str, object]:
    """Every figure of this suite (``quick``: fewer runs, for a smoke test)."""
    runs, seconds = (5, 1.0) if quick else (30, 10.0)
    with tempfile.TemporaryDirectory(prefix="teaclave-bench-") as tmp:
        directory = Path(tmp)
        (directory / "files").mkdir()
        config_path = write_config(directory)  # the default intervals and task slots
        config = load_config(config_path)
        password = secrets.token_urlsafe(16)
        log = io.StringIO()
        env = {ADMIN_PASSWORD_ENV: password}
        with Supervisor(config, config_path, output=log, env=env) as supervisor:
            bench = Bench(config, password)
            with bench.client() as client:
                latency = bench.latencies(client, runs)
            throughput = {
                executor: {n: round(bench.throughput(n, seconds, executor), 2) for n in CLIENTS}
                for executor in EXECUTORS
            }
            cpu = bench.cpu_per_task(supervisor, CLIENTS[-1], seconds)
    rpc, echo, python = latency["rpc"], latency["builtin_echo"], latency["python_echo"]
    return {
        "machine": f"{host.machine()}, {host.python_implementation()} {host.python_version()}",
        "rpc": rpc,
        "echo_task": {
            **echo,
            "ratio_to_rpc": round(echo["median_ms"] / rpc["median_ms"], 2),
            "p90_ratio_to_rpc": round(echo["p90_ms"] / rpc["median_ms"], 2),
        },
        "python_echo_task": {
            **python,
            "ratio_to_builtin_echo": round(python["median_ms"] / echo["median_ms"], 2),
        },
        "throughput_tasks_per_s": {
            executor: {f"{n}_clients": value for n, value in figures.items()}
            for executor, figures in throughput.items()
        },
        "cpu_ms_per_echo_task_8_clients": {**cpu, "all": round(sum(cpu.values()), 2)},
        "python_throughput_ratio_to_builtin": {
            f"{n}_clients": round(throughput["python"][n] / throughput["builtin"][n], 2)
            for n in CLIENTS
        },
    }
