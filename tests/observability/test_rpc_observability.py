"""RPC metrics and spans: interceptors on both sides, the trace context in metadata."""

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from teaclave.config import Config, Endpoints
from teaclave.observability import metrics, tracing
from teaclave.services.base import ServiceEnv
from tests.conftest import pick_free_port
from tests.rpc.rpc_helpers import STREAMED, ask, register_echo, stream
from tests.waiting import wait_until

METHOD = "TeaclaveAccessControl/AuthorizeApi"
SPAN = "teaclave_access_control_service_proto.TeaclaveAccessControl/AuthorizeApi"


@pytest.fixture
def config(tmp_path: Path, free_port: int) -> Config:
    return Config(
        data_dir=str(tmp_path), endpoints=Endpoints(access_control=f"127.0.0.1:{free_port}")
    )


@pytest.fixture
def caller(config: Config) -> Iterator[ServiceEnv]:
    """A frontend calling an access-control server that answers with the Echo servicer."""
    server = ServiceEnv.create(config, "access_control").serve("access_control", register_echo)
    try:
        yield ServiceEnv.create(config, "frontend")
    finally:
        server.stop(0)


def call(env: ServiceEnv, api: str = "x") -> None:
    peer = env.peer("access_control")
    try:
        ask(peer, api)
    finally:
        peer.close()


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def counts() -> list[float]:
    """Server: OK and INVALID_ARGUMENT answers, timed calls; client: OK calls."""
    served = {"service": "access_control", "method": METHOD}
    client = {"peer": "access_control", "method": METHOD, "code": "OK"}
    return [
        sample("teaclave_rpc_server_handled_total", **served, code="OK"),
        sample("teaclave_rpc_server_handled_total", **served, code="INVALID_ARGUMENT"),
        sample("teaclave_rpc_server_handling_seconds_count", **served),
        sample("teaclave_rpc_client_handled_total", **client),
    ]


def test_calls_are_counted_and_timed_on_both_sides(caller: ServiceEnv) -> None:
    before = counts()
    call(caller)
    with pytest.raises(grpc.RpcError):
        call(caller, "fail")
    assert [b - a for a, b in zip(before, counts(), strict=True)] == [1, 1, 2, 1]


def test_streams_are_counted_and_timed_on_both_sides_and_their_messages_counted(
    caller: ServiceEnv,
) -> None:
    served = {"service": "access_control", "method": "Streams/Count"}
    client = {"peer": "access_control", "method": "Streams/Count"}

    def stream_counts() -> list[float]:
        return [
            sample("teaclave_rpc_server_handled_total", **served, code="OK"),
            sample("teaclave_rpc_server_handled_total", **served, code="INVALID_ARGUMENT"),
            sample("teaclave_rpc_server_handling_seconds_count", **served),
            sample("teaclave_rpc_server_stream_messages_total", **served),
            sample("teaclave_rpc_client_handled_total", **client, code="OK"),
            sample("teaclave_rpc_client_handled_total", **client, code="INVALID_ARGUMENT"),
        ]

    before = stream_counts()
    peer = caller.peer("access_control")
    try:
        assert len(list(stream(peer))) == STREAMED
        with pytest.raises(grpc.RpcError):
            list(stream(peer, "fail"))
    finally:
        peer.close()

    def added() -> list[float]:
        return [b - a for a, b in zip(before, stream_counts(), strict=True)]

    expected = [1, 1, 2, STREAMED + 1, 1, 1]
    # The client counts a stream in a callback that may run just after its last message.
    wait_until(lambda: added() == expected, f"the streams counted as {expected}")


def test_a_traced_call_carries_its_context_to_the_server(
    caller: ServiceEnv, spans: InMemorySpanExporter
) -> None:
    with tracing.tracer().start_as_current_span("request") as request:
        call(caller)
        with pytest.raises(grpc.RpcError):
            call(caller, "fail")
    found = spans.get_finished_spans()
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in found} == {trace_id}
    clients = [s for s in found if s.kind is SpanKind.CLIENT]
    servers = [s for s in found if s.kind is SpanKind.SERVER]
    assert [s.name for s in clients] == [SPAN, SPAN] == [s.name for s in servers]
    for client, server in zip(clients, servers, strict=True):
        assert client.parent is not None
        assert client.parent.span_id == request.get_span_context().span_id
        assert server.parent is not None
        assert server.parent.span_id == client.context.span_id  # via the traceparent metadata
    assert [s.attributes["rpc.grpc.status_code"] for s in servers] == [0, 3]
    assert [s.status.status_code for s in servers] == [StatusCode.UNSET, StatusCode.ERROR]


def test_calls_outside_a_trace_make_no_span(
    caller: ServiceEnv, spans: InMemorySpanExporter
) -> None:
    call(caller)  # an internal endpoint: no trace is started for an untraced caller
    assert spans.get_finished_spans() == ()


def test_task_spans_join_the_task_trace_and_link_the_request(spans: InMemorySpanExporter) -> None:
    with tracing.tracer().start_as_current_span("create") as create:
        stored = tracing.traceparent()
    with (
        tracing.tracer().start_as_current_span("later request") as request,
        tracing.task_span("task.approve", stored, {"teaclave.task_id": "t"}),
    ):
        pass
    approve = next(s for s in spans.get_finished_spans() if s.name == "task.approve")
    assert approve.context.trace_id == create.get_span_context().trace_id
    assert approve.parent is not None
    assert approve.parent.span_id == create.get_span_context().span_id
    assert [link.context.span_id for link in approve.links] == [request.get_span_context().span_id]
    assert tracing.parse("") is None
    assert tracing.parse("00-zz-yy-01") is None


def test_tracing_off_stores_no_context() -> None:
    with tracing.tracer().start_as_current_span("create") as span:
        assert not span.get_span_context().is_valid
        assert tracing.traceparent() == ""
        assert tracing.ids() == ("", "")


def test_the_metrics_endpoint_serves_the_registry(caller: ServiceEnv) -> None:
    call(caller)
    server = metrics.MetricsServer("127.0.0.1", pick_free_port())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        server.close()
    assert (
        'teaclave_rpc_server_handled_total{code="OK",method="TeaclaveAccessControl/AuthorizeApi",'
        'service="access_control"}' in text
    )
    assert 'teaclave_rpc_server_handling_seconds_bucket{le="0.005",method="' in text
    assert "# TYPE teaclave_task_stage_seconds histogram" in text


def test_spans_name_the_current_trace(spans: InMemorySpanExporter) -> None:
    with tracing.tracer().start_as_current_span("x") as span:
        context = span.get_span_context()
        assert tracing.ids() == (
            trace.format_trace_id(context.trace_id),
            trace.format_span_id(context.span_id),
        )
