"""OpenTelemetry traces: the tracer, W3C trace context in gRPC metadata, task spans.

Tracing is off (a no-op tracer) until :func:`install` is given a tracer
provider (:mod:`teaclave.observability.process` builds it from the
configuration). Contexts travel as W3C ``traceparent`` (and ``tracestate``)
metadata; a task carries the ``traceparent`` of its creation span, so every
later span about it, in whichever service, joins the task's trace
(:func:`task_span`), linked to the request it was made in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_NO_OP = trace.NoOpTracer()
_tracer: trace.Tracer = _NO_OP
_provider: TracerProvider | None = None

Attributes = Mapping[str, str | int | float | bool]


def install(provider: TracerProvider | None) -> None:
    """Send spans to ``provider`` from now on (None: tracing off)."""
    global _tracer, _provider  # noqa: PLW0603 (one tracer per process)
    _provider = provider
    _tracer = _NO_OP if provider is None else provider.get_tracer("teaclave")


def tracer() -> trace.Tracer:
    """The current tracer (a no-op one while tracing is off)."""
    return _tracer


def enabled() -> bool:
    """Whether spans are recorded."""
    return _provider is not None


def inject(
    metadata: list[tuple[str, str | bytes]], context: otel_context.Context | None = None
) -> None:
    """Append the trace context of ``context`` (default: the current one) to gRPC metadata."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context)
    metadata.extend(carrier.items())


def extract(metadata: Iterable[tuple[str, str | bytes]]) -> otel_context.Context | None:
    """The remote trace context in gRPC metadata; None if it carries none (or a bad one)."""
    carrier = {key: value for key, value in metadata if isinstance(value, str)}
    if "traceparent" not in carrier:
        return None
    context = _PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def traceparent(span: Span | None = None) -> str:
    """The W3C ``traceparent`` of ``span`` (default: the current span); '' if there is none."""
    context = trace.set_span_in_context(span) if span is not None else None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context)
    return carrier.get("traceparent", "")


def parse(value: str) -> otel_context.Context | None:
    """The context a stored ``traceparent`` names; None if empty or malformed."""
    return extract([("traceparent", value)]) if value else None


def has_current_span() -> bool:
    """Whether a span (local or remote) is current: calls made now belong to a trace."""
    return trace.get_current_span().get_span_context().is_valid


@contextlib.contextmanager
def task_span(
    name: str,
    task_trace: str,
    attributes: Attributes | None = None,
    *,
    start_time: int | None = None,
) -> Iterator[Span]:
    """A span of the task whose trace context is ``task_trace``, current within the block.

    Its parent is the task's span (or it starts a trace of its own if the task has
    none); it links to the span current on entry, i.e. the request it serves. An
    exception escaping the block marks it as an error.
    """
    current = trace.get_current_span().get_span_context()
    links = [Link(current)] if current.is_valid else []
    parent = parse(task_trace) or otel_context.Context()
    span = _tracer.start_span(
        name, parent, attributes=attributes, links=links, start_time=start_time
    )
    with trace.use_span(span, end_on_exit=True):
        yield span


def record_span(
    name: str,
    parent: otel_context.Context | None,
    start_time: int,
    end_time: int,
    attributes: Attributes | None = None,
    *,
    error: str = "",
) -> Span:
    """A finished span of ``parent`` that ran from ``start_time`` to ``end_time`` (ns)."""
    span = _tracer.start_span(name, parent, attributes=attributes, start_time=start_time)
    if error:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=end_time)
    return span


def start_span(
    name: str,
    parent: otel_context.Context | None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes | None = None,
    start_time: int | None = None,
) -> Span:
    """A new span of ``parent``, begun at ``start_time`` (ns; default: now); the caller ends it."""
    return _tracer.start_span(name, parent, kind=kind, attributes=attributes, start_time=start_time)


@contextlib.contextmanager
def current(span: Span) -> Iterator[None]:
    """Make ``span`` current within the block (without ending it)."""
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)


def ids() -> tuple[str, str]:
    """The current trace and span ids in hex ('' each when no span is current)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
