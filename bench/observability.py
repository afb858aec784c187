"""The cost of observability (suite ``observability`` of ``python -m bench``).

The ``rpc`` and ``echo_task`` figures of the ``platform`` suite on platforms
with observability ``off`` (the default), with ``metrics`` endpoints only, and
with ``all`` of it on (metrics endpoints, every span written as JSON lines,
JSON log lines), in turn, twice each; the ratios compare the medians with ``off``.
"""

from __future__ import annotations

import io
import secrets
import socket
import statistics
import tempfile
from pathlib import Path

from bench.platform import Bench
from teaclave.cli.demo import write_config
from teaclave.config import ADMIN_PASSWORD_ENV, SERVICES, load_config
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


def measure(mode: str, runs: int) -> dict[str, dict[str, float]]:
    """rpc and echo_task on a fresh platform observed as ``mode`` says (:data:`MODES`)."""
    with tempfile.TemporaryDirectory(prefix="teaclave-bench-") as tmp:
        directory = Path(tmp)
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
            bench = Bench(config, password)
            with bench.client() as client:
                figures = bench.latencies(client, runs)
    return {"rpc": figures["rpc"], "echo_task": figures["builtin_echo"]}


def run(quick: bool) -> dict[str, object]:
    """Every figure of this suite (``quick``: fewer runs, one platform each)."""
    runs, rounds = (5, 1) if quick else (30, 2)
    results: dict[str, list[dict[str, dict[str, float]]]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode, found in results.items():
            found.append(measure(mode, runs))

    def median(mode: str, figure: str) -> float:
        return round(statistics.median(r[figure]["median_ms"] for r in results[mode]), 2)

    figures: dict[str, object] = {"runs": results}
    for figure in ("rpc", "echo_task"):
        base = median("off", figure)
        figures[figure] = {
            **{f"{mode}_median_ms": median(mode, figure) for mode in MODES},
            **{f"{mode}_ratio": round(median(mode, figure) / base, 3) for mode in MODES},
        }
    return figures
