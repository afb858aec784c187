"""RPC metrics and spans, server side (:func:`observing`) and client side (:func:`observed`).

A server span starts for every call to a public endpoint and for internal
calls that carry a trace context; a client span only when a span is current
(a call made on behalf of a traced request or task). Background calls
(heartbeats, audit flushes) are counted, never traced.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from teaclave.core.iterators import stepped
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


class _Method:
    """A served method: ``path`` of ``service`` (``public``: a client's calls, which
    start a trace unless they bring one)."""

    def __init__(self, service: str, path: str, *, public: bool) -> None:
        self.service = service
        self.path = path
        self.public = public
        self.label = method_label(path)
        self.seconds = metrics.RPC_SERVER_SECONDS.labels(service, self.label)


class _Served:
    """One call of ``method`` being served: timed from now, counted with its status at
    :meth:`end`, in a span if traced."""

    def __init__(self, method: _Method, context: grpc.ServicerContext) -> None:
        self._method = method
        self._context = context
        self._started = time.perf_counter()
        traced = tracing.enabled()
        parent = tracing.extract(context.invocation_metadata()) if traced else None
        self._span = None
        if traced and (method.public or parent is not None):
            path = method.path
            self._span = tracing.start_span(
                path.lstrip("/"), parent, kind=SpanKind.SERVER, attributes=_attributes(path)
            )

    def current(self) -> contextlib.AbstractContextManager[None]:
        """Within the block, the call's span (if any) is the current one."""
        return contextlib.nullcontext() if self._span is None else tracing.current(self._span)

    def end(self) -> None:
        """Count the call with the status its handler set (CANCELLED if its caller went)."""
        code = self._context.code()  # type: ignore[attr-defined]
        if code is None:
            code = grpc.StatusCode.OK if self._context.is_active() else grpc.StatusCode.CANCELLED
        if self._span is not None:
            _end(self._span, code)
        method = self._method
        method.seconds.observe(time.perf_counter() - self._started)
        metrics.RPC_SERVER_HANDLED.labels(method.service, method.label, code.name).inc()


def observing(service: str, path: str, handler: Handler, *, public: bool) -> Handler:
    """``handler`` (of the unary method ``path`` of ``service``) with each call counted,
    timed and, if traced, in a span; its status is the one the handler set on the context.

    ``public``: a client's call, which starts a trace unless it brings one.
    """

    method = _Method(service, path, public=public)

    def observed(request: Any, context: grpc.ServicerContext) -> Any:
        served = _Served(method, context)
        try:
            with served.current():
                return handler(request, context)
        finally:
            served.end()

    return observed


def observing_stream(service: str, path: str, handler: Handler, *, public: bool) -> Handler:
    """:func:`observing` for a server-streaming method: the call is timed from its start
    to the end of its stream, and each message sent is counted."""
    method = _Method(service, path, public=public)
    sent = metrics.RPC_SERVER_STREAM_MESSAGES.labels(service, method.label)

    def observed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        served = _Served(method, context)
        try:
            for response in stepped(lambda: handler(request, context), served.current):
                sent.inc()
                yield response
        finally:
            served.end()

    return observed


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _Observer(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Counts, times and (within a trace) spans each call; a stream from its start to
    its end."""

    def __init__(self, peer: str) -> None:
        self._peer = peer

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return self.intercept_unary_unary(continuation, details, request)

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

        def done(call: Any) -> None:  # at once for a blocking call; later for a future, a stream
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
    """``channel`` with its calls (unary, server-streaming) to service ``peer`` counted,
    timed and traced."""
    return grpc.intercept_channel(channel, _Observer(peer))
