"""The cost of observability, and where a task's time goes (suite ``observability``).

The ``rpc`` and ``echo_task`` figures of the ``platform`` suite on platforms
with observability ``off`` (the default), with ``metrics`` endpoints only, and
with ``all`` of it on (metrics endpoints, every span written as JSON lines,
JSON log lines), in turn, twice each; the ratios compare the medians with ``off``.
``stages``: the spans of one echo task of each executor, read from its trace
(the last of a few on a platform tracing to files), as milliseconds from the
start of the client's CreateTask.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import socket
import statistics
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.platform import EXECUTORS, Bench
from teaclave.cli.demo import write_config
from teaclave.config import ADMIN_PASSWORD_ENV, SERVICES, Config, load_config
from teaclave.services.supervisor import Supervisor


def _free_port_block(size: int) -> int:
    """A base port whose next ``size`` ports on 127.0.0.1 were free a moment ago."""
    for _ in range(100):
        base = 20000 + secrets.randbelow(40000)
        try:
            for port in range(base, base + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise SystemExit("no block of free ports for the metrics endpoints")


MODES = {
    "off": "",
    "metrics": "metrics_port = {port}\n",
    "all": 'metrics_port = {port}\ntraces = "file"\nlog_format = "json"\n',
}


@contextlib.contextmanager
def observed_platform(mode: str, directory: Path) -> Iterator[tuple[Bench, Config]]:
    """A fresh platform in ``directory`` observed as ``mode`` says (:data:`MODES`), until
    the block ends."""
    (directory / "files").mkdir()
    config_path = write_config(directory)
    if MODES[mode]:
        port = _free_port_block(len(SERVICES))
        with config_path.open("a") as config_file:
            config_file.write("\n[observability]\n" + MODES[mode].format(port=port))
    config = load_config(config_path)
    password = secrets.token_urlsafe(16)
    env = {ADMIN_PASSWORD_ENV: password}
    with Supervisor(config, config_path, output=io.StringIO(), env=env):
        yield Bench(config, password), config


def measure(mode: str, runs: int) -> dict[str, dict[str, float]]:
    """rpc and echo_task on a fresh platform observed as ``mode`` says."""
    with (
        tempfile.TemporaryDirectory(prefix="teaclave-bench-") as tmp,
        observed_platform(mode, Path(tmp)) as (bench, _),
        bench.client() as client,
    ):
        figures = bench.latencies(client, runs)
    return {"rpc": figures["rpc"], "echo_task": figures["builtin_echo"]}


def stages(runs: int) -> dict[str, list[dict[str, object]]]:
    """Each executor's echo task, span by span, from its trace: the last of ``runs``."""
    traced: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="teaclave-bench-") as tmp:
        with observed_platform("all", Path(tmp)) as (bench, config), bench.client() as client:
            for executor in EXECUTORS:
                function_id = bench.register(client, executor)
                for _ in range(runs):
                    traced[executor] = bench.echo_task(client, function_id, executor)
        spans = [  # every service wrote its spans when the platform stopped
            json.loads(line)
            for path in sorted(config.trace_path().glob("*.jsonl"))
            for line in path.read_text().splitlines()
        ]
    return {executor: _timeline(spans, task_id) for executor, task_id in traced.items()}


def _timeline(spans: list[dict[str, Any]], task_id: str) -> list[dict[str, object]]:
    """The spans of ``task_id``'s trace in the order they began: service, name, start and
    duration (ms, from the first span's start)."""
    task_uuid = task_id.partition("-")[2]
    [trace_id] = {
        span["context"]["trace_id"]
        for span in spans
        if span["attributes"].get("teaclave.task_id") == task_uuid
    }
    trace = [span for span in spans if span["context"]["trace_id"] == trace_id]
    times = {id(span): (_ns(span["start_time"]), _ns(span["end_time"])) for span in trace}
    origin = min(start for start, _ in times.values())
    return [
        {
            "service": span["resource"]["attributes"]["service.name"],
            "span": span["name"].rpartition(".")[2],
            "start_ms": round((times[id(span)][0] - origin) / 1e6, 2),
            "ms": round((times[id(span)][1] - times[id(span)][0]) / 1e6, 2),
        }
        for span in sorted(trace, key=lambda span: times[id(span)][0])
    ]


def _ns(stamp: str) -> int:
    """Nanoseconds since the epoch of an exporter's ISO 8601 time (``...Z``, microseconds)."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1_000_000) * 1000


def run(quick: bool) -> dict[str, object]:
    """Every figure of this suite (``quick``: fewer runs, one platform each)."""
    runs, rounds = (5, 1) if quick else (30, 2)
    results: dict[str, list[dict[str, dict[str, float]]]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode, found in results.items():
            found.append(measure(mode, runs))

    def median(mode: str, figure: str) -> float:
        return round(statistics.median(r[figure]["median_ms"] for r in results[mode]), 2)

    figures: dict[str, object] = {"runs": results, "stages": stages(3 if quick else 10)}
    for figure in ("rpc", "echo_task"):
        base = median("off", figure)
        figures[figure] = {
            **{f"{mode}_median_ms": median(mode, figure) for mode in MODES},
            **{f"{mode}_ratio": round(median(mode, figure) / base, 3) for mode in MODES},
        }
    return figures
