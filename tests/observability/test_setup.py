"""The [observability] settings, JSON log lines, and a task run's spans from its stage report."""

import io
import json
import logging
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from teaclave.config import ConfigError, load_config, parse_config
from teaclave.observability import metrics, tracing
from teaclave.observability.logs import JsonFormatter, wrap
from teaclave.observability.process import start
from teaclave.observability.stages import recording, stage
from teaclave.services.execution.observe import TaskRun
from teaclave.services.storage.observe import RecordCollector
from teaclave.storage import keys
from teaclave.storage.api import Write
from teaclave.storage.sqlite import SqliteStore
from tests.conftest import pick_free_port


def test_defaults_are_off_and_loopback() -> None:
    observability = parse_config("").observability
    assert observability.metrics_address("storage") is None
    assert (observability.metrics_host, observability.traces) == ("127.0.0.1", "none")
    assert observability.log_format == "text"


def test_each_service_has_its_own_port() -> None:
    config = parse_config("[observability]\nmetrics_port = 9100\n")
    assert config.observability.metrics_address("storage") == ("127.0.0.1", 9100)
    assert config.observability.metrics_address("execution") == ("127.0.0.1", 9106)
    assert parse_config("[observability]\nmetrics_port = 0\n").observability.metrics_port == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('traces = "jaeger"', "observability.traces must be one of none, console, otlp, file"),
        ('log_format = "xml"', "observability.log_format must be one of text, json"),
        ("metrics_port = 65530", "observability.metrics_port must leave room for 7 ports"),
        ("metrics_port = -1", "observability.metrics_port must be a positive integer"),
        ("metrics_port = false", "observability.metrics_port must be a positive integer"),
        ("tracez = 1", "unknown setting observability.tracez"),
    ],
)
def test_bad_settings_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f"[observability]\n{text}\n")


def test_trace_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "teaclave.toml"
    path.write_text('[observability]\ntrace_dir = "traces"\n')
    assert load_config(path).trace_path() == tmp_path / "traces"


def test_the_file_exporter_writes_json_lines_per_process(tmp_path: Path) -> None:
    path = tmp_path / "teaclave.toml"
    port = pick_free_port()
    path.write_text(f'[observability]\ntraces = "file"\ntrace_dir = "t"\nmetrics_port = {port}\n')
    observability = start(load_config(path), "storage")
    try:
        assert tracing.enabled()
        with tracing.tracer().start_as_current_span("hello"):
            pass
    finally:
        observability.close()
    assert not tracing.enabled()
    [written] = (tmp_path / "t").iterdir()
    assert written.name.startswith("storage-")
    [line] = written.read_text().splitlines()
    span = json.loads(line)
    assert span["name"] == "hello"
    assert span["resource"]["attributes"]["service.name"] == "storage"


def test_json_log_lines_carry_the_trace_ids(spans: InMemorySpanExporter) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("scheduler"))
    logger = logging.getLogger("test.observability.json")
    logger.addHandler(handler)
    try:
        logger.warning("outside")
        with tracing.tracer().start_as_current_span("x"):
            logger.warning("inside %s", "a span")
            trace_id, span_id = tracing.ids()
    finally:
        logger.removeHandler(handler)
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (outside["service"], outside["message"], outside["level"]) == (
        "scheduler",
        "outside",
        "WARNING",
    )
    assert "trace_id" not in outside
    assert (inside["message"], inside["trace_id"], inside["span_id"]) == (
        "inside a span",
        trace_id,
        span_id,
    )


def test_other_output_is_wrapped_as_json() -> None:
    assert wrap("storage", '{"a": 1}') == '{"a": 1}'
    assert json.loads(wrap("storage", "Traceback (most recent call last):")) == {
        "service": "storage",
        "message": "Traceback (most recent call last):",
    }
    wrapped = {"service": "storage", "message": "{not json"}
    assert json.loads(wrap("storage", "{not json")) == wrapped


def test_a_task_run_turns_its_stage_report_into_spans(spans: InMemorySpanExporter) -> None:
    with tracing.tracer().start_as_current_span("task.create") as create:
        stored = tracing.traceparent()
    busy = metrics.REGISTRY.get_sample_value("teaclave_execution_busy_slots") or 0.0
    runs = metrics.REGISTRY.get_sample_value("teaclave_task_stage_seconds_count", {"stage": "run"})
    run = TaskRun("task-1", stored)
    assert metrics.REGISTRY.get_sample_value("teaclave_execution_busy_slots") == busy + 1
    with recording() as report:
        with stage("fetch_inputs"), stage("fetch_input", schema="raw"):
            pass
        with pytest.raises(RuntimeError), stage("run"):
            raise RuntimeError
    run.stages(report.encode())
    run.stages(b"garbage")  # logged, ignored
    run.end("Err")
    run.end("Err")  # once only
    assert metrics.REGISTRY.get_sample_value("teaclave_execution_busy_slots") == busy
    assert (
        metrics.REGISTRY.get_sample_value("teaclave_task_stage_seconds_count", {"stage": "run"})
        == (runs or 0) + 1
    )
    found = {s.name: s for s in spans.get_finished_spans()}
    assert set(found) == {
        "task.create",
        "task.execute",
        "task.spawn",
        "task.fetch_inputs",
        "task.fetch_input",
        "task.run",
    }
    assert {s.context.trace_id for s in found.values()} == {create.get_span_context().trace_id}

    def parent(name: str) -> str:
        span_id = found[name].parent.span_id  # type: ignore[union-attr]
        return next(n for n, s in found.items() if s.context.span_id == span_id)

    assert [parent(n) for n in ("task.execute", "task.spawn", "task.fetch_input", "task.run")] == [
        "task.create",
        "task.execute",
        "task.fetch_inputs",
        "task.execute",
    ]
    assert found["task.fetch_input"].attributes == {"schema": "raw"}
    assert found["task.run"].status.description == "RuntimeError"
    assert found["task.execute"].attributes["teaclave.task_outcome"] == "Err"


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace collector that keeps the names of the spans it receives."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.services: set[str] = set()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    self.services.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                self.names.extend(span.name for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_otlp_exports_to_a_loopback_collector_in_the_clear() -> None:
    collector = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        config = parse_config(
            f'[observability]\ntraces = "otlp"\notlp_endpoint = "127.0.0.1:{port}"\n'
        )
        observability = start(config, "scheduler")
        try:
            with tracing.tracer().start_as_current_span("exported"):
                pass
        finally:
            observability.close()  # sends what is left
    finally:
        server.stop(0)
    assert (collector.names, collector.services) == (["exported"], {"scheduler"})


def test_storage_counts_records_by_namespace_and_the_queue(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db", bytes(32))
    try:
        store.commit(
            [],
            [
                Write(keys.TASK + "a", b"x"),
                Write(keys.TASK + "b", b"x"),
                Write(keys.staged_key(1, "a"), b"x"),
                Write(keys.USER + "alice", b"x"),
                Write(keys.USER_FUNCTIONS + "alice", b"x"),  # not the "user/" namespace
            ],
        )
        families = {f.name: f for f in RecordCollector(store.count).collect()}
    finally:
        store.close()
    records = {s.labels["namespace"]: s.value for s in families["teaclave_storage_records"].samples}
    assert records == {
        "user": 1,
        "function": 0,
        "input": 0,
        "output": 0,
        "task": 2,
        "audit_log": 0,
    }
    assert [s.value for s in families["teaclave_queue_depth"].samples] == [1]
