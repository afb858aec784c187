"""Sandbox start-up (suite ``sandbox`` of ``python -m bench``).

Figures: the median time from :func:`teaclave.executor.sandbox.spawn` to a "ready" byte
the target sends on the channel (fork, descriptors, rlimits, namespaces, /proc, uid drop,
Landlock, seccomp, audit hook), the median start of a bare interpreter
(``python -c pass`` as a subprocess) measured in the same run, their ratio (target ≤ 3),
and the sequential throughput of spawn → ready → exit.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time

from teaclave.executor.sandbox import Limits, SandboxOutcome, spawn

TARGET_RATIO = 3.0


def _ready(channel: socket.socket) -> int:
    channel.sendall(b"r")
    return 0


def _sandbox_start() -> tuple[float, float]:
    """Seconds to the ready byte, and to the sandbox's end."""
    ours, theirs = socket.socketpair()
    with ours:
        started = time.perf_counter()
        process = spawn(_ready, theirs, Limits())
        theirs.close()
        if ours.recv(1) != b"r":
            raise RuntimeError("the sandbox did not report ready")
        ready = time.perf_counter() - started
        outcome = process.wait()
        ended = time.perf_counter() - started
    if outcome != SandboxOutcome(0, None, None):
        raise RuntimeError(f"the sandbox failed: {outcome}")
    return ready, ended


def _bare_start() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def run(quick: bool) -> dict[str, object]:
    runs = 10 if quick else 50
    bare = statistics.median(_bare_start() for _ in range(runs))
    starts = [_sandbox_start() for _ in range(runs)]
    ready = statistics.median(s[0] for s in starts)
    began = time.perf_counter()
    for _ in range(runs):
        _sandbox_start()
    throughput = runs / (time.perf_counter() - began)
    ratio = ready / bare
    return {
        "runs": runs,
        "bare_interpreter_start_ms": round(bare * 1000, 2),
        "sandbox_ready_ms": round(ready * 1000, 2),
        "sandbox_ready_to_exit_ms": round(statistics.median(s[1] for s in starts) * 1000, 2),
        "ratio_to_bare": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "sequential_tasks_per_s": round(throughput, 1),
    }
