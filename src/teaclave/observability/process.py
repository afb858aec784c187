"""A service process's observability, from the configuration: metrics endpoint and tracer.

:func:`start` runs during start-up, before the runtime manifest: the metrics
endpoint binds its port and the "file" exporter opens its file then, so a
service without the ``net`` or ``fs`` capability can still serve and export.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from teaclave.config import Config
from teaclave.core.errors import Status, TeaclaveError
from teaclave.observability import tracing
from teaclave.observability.metrics import MetricsServer

log = logging.getLogger(__name__)


def _json_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def _loopback(endpoint: str) -> bool:
    host = endpoint.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _otlp(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    # Spans name no secret, but they leave the platform: in the clear only to loopback.
    return OTLPSpanExporter(endpoint=endpoint, insecure=_loopback(endpoint))


def exporter(config: Config, service: str) -> tuple[SpanExporter | None, IO[str] | None]:
    """The span exporter the configuration names, and the file it writes (if any)."""
    kind = config.observability.traces
    if kind == "console":
        return ConsoleSpanExporter(out=sys.stdout, formatter=_json_line), None
    if kind == "otlp":
        return _otlp(config.observability.otlp_endpoint), None
    if kind == "file":
        directory = config.trace_path()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = Path(directory) / f"{service}-{os.getpid()}.jsonl"
        sink = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (kept open)
        return ConsoleSpanExporter(out=sink, formatter=_json_line), sink
    return None, None


def provider(service: str, span_exporter: SpanExporter) -> TracerProvider:
    """A tracer provider for ``service`` exporting in batches through ``span_exporter``."""
    resource = Resource.create({"service.name": service, "service.namespace": "teaclave"})
    traces = TracerProvider(resource=resource)
    traces.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=500))
    return traces


@dataclass
class Observability:
    """What :func:`start` started; :meth:`close` stops it (spans not yet sent are sent)."""

    metrics: MetricsServer | None
    traces: TracerProvider | None
    sink: IO[str] | None

    def close(self) -> None:
        """Stop serving metrics, flush and stop the tracer."""
        if self.metrics is not None:
            self.metrics.close()
        if self.traces is not None:
            tracing.install(None)
            self.traces.shutdown()
        if self.sink is not None:
            self.sink.close()


def start(config: Config, service: str) -> Observability:
    """Start the metrics endpoint and the tracer ``config`` asks for, for ``service``.

    UNAVAILABLE if the metrics port cannot be bound.
    """
    address = config.observability.metrics_address(service)
    server = None
    if address is not None:
        try:
            server = MetricsServer(*address)
        except OSError as exc:
            raise TeaclaveError(
                Status.UNAVAILABLE,
                f"cannot serve metrics on {address[0]}:{address[1]}: {exc.strerror or exc}",
            ) from None
        log.info("%s: metrics on http://%s:%d/metrics", service, *address)
    span_exporter, sink = exporter(config, service)
    traces = None if span_exporter is None else provider(service, span_exporter)
    tracing.install(traces)
    return Observability(server, traces, sink)
