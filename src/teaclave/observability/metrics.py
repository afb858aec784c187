"""Every Prometheus metric of the platform, in one registry (docs/operations.md).

Metrics are always counted (in memory, microseconds a call); a service exposes
them only when ``observability.metrics_port`` is set (:func:`serve`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()
"""The platform's metrics (no process or platform collectors: they read /proc)."""

_RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

RPC_SERVER_HANDLED = Counter(
    "teaclave_rpc_server_handled",
    "RPCs a service answered, by method and gRPC status code.",
    ["service", "method", "code"],
    registry=REGISTRY,
)
RPC_SERVER_SECONDS = Histogram(
    "teaclave_rpc_server_handling_seconds",
    "Time a service took to answer an RPC, from its arrival to its answer (a stream: its end).",
    ["service", "method"],
    buckets=_RPC_BUCKETS,
    registry=REGISTRY,
)
RPC_SERVER_STREAM_MESSAGES = Counter(
    "teaclave_rpc_server_stream_messages",
    "Messages a service sent on its server-streaming RPCs (storage Watch), by method.",
    ["service", "method"],
    registry=REGISTRY,
)
RPC_CLIENT_HANDLED = Counter(
    "teaclave_rpc_client_handled",
    "RPCs a service made to another service, by peer, method and gRPC status code.",
    ["peer", "method", "code"],
    registry=REGISTRY,
)
RPC_CLIENT_SECONDS = Histogram(
    "teaclave_rpc_client_handling_seconds",
    "Time an RPC to another service took, as its caller saw it (a stream: until its end).",
    ["peer", "method"],
    buckets=_RPC_BUCKETS,
    registry=REGISTRY,
)
TASK_TRANSITIONS = Counter(
    "teaclave_task_transitions",
    "Tasks the scheduler moved into a state (Running, Finished, Failed, Canceled).",
    ["state"],
    registry=REGISTRY,
)
TASK_STAGE_SECONDS = Histogram(
    "teaclave_task_stage_seconds",
    "Time a task spent in one stage (staged, spawn, fetch_inputs, run, upload_outputs, ...).",
    ["stage"],
    buckets=_STAGE_BUCKETS,
    registry=REGISTRY,
)
EXECUTION_SLOTS = Gauge(
    "teaclave_execution_slots",
    "Tasks this execution service can run at once.",
    registry=REGISTRY,
)
EXECUTION_BUSY = Gauge(
    "teaclave_execution_busy_slots",
    "Tasks this execution service is running now.",
    registry=REGISTRY,
)


@contextlib.contextmanager
def collecting(collector: Collector) -> Iterator[None]:
    """Within the block, ``collector``'s metrics are part of :data:`REGISTRY`."""
    REGISTRY.register(collector)
    try:
        yield
    finally:
        REGISTRY.unregister(collector)


class MetricsServer:
    """The HTTP endpoint serving :data:`REGISTRY` (``GET /metrics``) on one address."""

    def __init__(self, host: str, port: int) -> None:
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, host, registry=REGISTRY)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
