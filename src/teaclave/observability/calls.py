"""RPC metrics and spans, server side (:func:`observing`) and client side (:func:`observed`).

A server span starts for every call to a public endpoint and for internal
calls that carry a trace context; a client span only when a span is current
(a call made on behalf of a traced request or task). Background calls
(heartbeats, audit flushes) are counted, never traced.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from teaclave.observability import metrics, tracing


def method_label(path: str) -> str:
    """``/package.Service/Method`` as ``Service/Method``."""
    service, _, method = path.lstrip("/").rpartition("/")
    return f"{service.rpartition('.')[2]}/{method}"


def _attributes(path: str) -> dict[str, str]:
    service, _, method = path.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def _end(span: trace.Span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


Handler = Callable[[Any, grpc.ServicerContext], Any]


def observing(service: str, path: str, handler: Handler, *, public: bool) -> Handler:
    """``handler`` (of method ``path`` of ``service``) with each call counted, timed and,
    if traced, in a span; its status is the one the handler set on the context.

    ``public``: a client's call, which starts a trace unless it brings one.
    """
    label = method_label(path)
    server_seconds = metrics.RPC_SERVER_SECONDS.labels(service, label)

    def observed(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        traced = tracing.enabled()
        parent = tracing.extract(context.invocation_metadata()) if traced else None
        span = None
        if traced and (public or parent is not None):
            span = tracing.start_span(
                path.lstrip("/"), parent, kind=SpanKind.SERVER, attributes=_attributes(path)
            )
        token = otel_context.attach(trace.set_span_in_context(span)) if span else None
        try:
            return handler(request, context)
        finally:
            code = context.code() or grpc.StatusCode.OK  # type: ignore[attr-defined]
            if token is not None:
                otel_context.detach(token)
            if span is not None:
                _end(span, code)
            server_seconds.observe(time.perf_counter() - started)
            metrics.RPC_SERVER_HANDLED.labels(service, label, code.name).inc()

    return observed


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _Observer(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, peer: str) -> None:
        self._peer = peer

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        path = details.method
        started = time.perf_counter()
        span = None
        metadata = list(details.metadata or ())
        if tracing.enabled() and tracing.has_current_span():
            span = tracing.start_span(
                path.lstrip("/"), None, kind=SpanKind.CLIENT, attributes=_attributes(path)
            )
            tracing.inject(metadata, trace.set_span_in_context(span))
        details = _Details(
            path,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )
        label = method_label(path)

        def done(call: Any) -> None:  # at once for a blocking call; later for a future
            code = call.code()
            if span is not None:
                _end(span, code)
            seconds = time.perf_counter() - started
            metrics.RPC_CLIENT_SECONDS.labels(self._peer, label).observe(seconds)
            metrics.RPC_CLIENT_HANDLED.labels(self._peer, label, code.name).inc()

        outcome = continuation(details, request)
        outcome.add_done_callback(done)
        return outcome


def observed(channel: grpc.Channel, peer: str) -> grpc.Channel:
    """``channel`` with its unary calls to service ``peer`` counted, timed and traced."""
    return grpc.intercept_channel(channel, _Observer(peer))
