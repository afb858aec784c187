"""One task through the whole platform, observed: metrics endpoints and one trace.

The platform runs with metrics on, spans written as JSON lines (one file per
service process) and JSON log lines. After one two-input, two-output task, the
metrics endpoints show the RPCs and the task, and every stage of the task, in
every service, is in one trace.
"""

import io
import json
import secrets
import socket
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import own_data, register_psi, run_task
from e2e_platform import Platform
from teaclave_fixtures import PSI_DIR
from waiting import wait_until

from teaclave.cli.demo import write_config
from teaclave.config import ADMIN_PASSWORD_ENV, SERVICES, load_config
from teaclave.services.supervisor import Supervisor

TASK_STAGES = {
    "task.create",
    "task.assign_data",
    "task.approve",
    "task.invoke",
    "task.staged",
    "task.pull",
    "task.execute",
    "task.spawn",
    "task.sandbox",
    "task.fetch_inputs",
    "task.fetch_input",
    "task.run",
    "task.upload_outputs",
    "task.upload_output",
    "task.end",
    "task.result",
}


def free_port_block(size: int) -> int:
    """A base port whose next ``size`` ports on 127.0.0.1 were free a moment ago."""
    for _ in range(100):
        base = 20000 + secrets.randbelow(40000)
        sockets = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no block of free ports")


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("observed")
    (root / "files").mkdir()
    config_path = write_config(root)
    with config_path.open("a") as config_file:
        config_file.write(
            f"""
[observability]
metrics_port = {free_port_block(len(SERVICES))}
traces = "file"
trace_dir = "traces"
log_format = "json"
"""
        )
    config = load_config(config_path)
    password = secrets.token_urlsafe(16)
    log = io.StringIO()
    supervisor = Supervisor(config, config_path, output=log, env={ADMIN_PASSWORD_ENV: password})
    with supervisor:
        yield Platform(config, supervisor, root / "files", password, log)


def scrape(platform: Platform, service: str) -> dict[str, float]:
    """The samples of ``service``'s metrics endpoint: ``name{labels}`` -> value."""
    address = platform.config.observability.metrics_address(service)
    assert address is not None
    assert address[0] == "127.0.0.1"
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def read_spans(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_one_task_observed_in_metrics_and_one_trace(observed: Platform) -> None:
    with observed.admin() as admin:
        function_id = register_psi(admin)
    with observed.new_user() as alice:
        a = own_data(observed, alice, (PSI_DIR / "psi0.txt").read_bytes())
        b = own_data(observed, alice, (PSI_DIR / "psi1.txt").read_bytes())
        task_id = run_task(
            alice,
            function_id,
            {"order": "ascending"},
            {"input_data1": (alice, a.input_id), "input_data2": (alice, b.input_id)},
            {"output_result1": (alice, a.output_id), "output_result2": (alice, b.output_id)},
        )
        alice.get_task_result(task_id, timeout=60)
        alice.get_task(task_id)  # the result, read once more: a second task.result span
    task_uuid = task_id.removeprefix("task-")

    frontend = scrape(observed, "frontend")
    created = 'method="TeaclaveFrontend/CreateTask",service="frontend"'
    assert frontend[f'teaclave_rpc_server_handled_total{{code="OK",{created}}}'] >= 1
    assert frontend[f'teaclave_rpc_server_handling_seconds_bucket{{le="+Inf",{created}}}'] >= 1
    assert (
        frontend[
            'teaclave_rpc_client_handled_total{code="OK",method="TeaclaveManagement/CreateTask",'
            'peer="management"}'
        ]
        >= 1
    )
    # access_control serves its metrics although its runtime manifest grants no I/O at all
    access_control = scrape(observed, "access_control")
    authorized = 'method="TeaclaveAccessControl/AuthorizeApi",service="access_control"'
    assert access_control[f'teaclave_rpc_server_handled_total{{code="OK",{authorized}}}'] >= 1
    storage = scrape(observed, "storage")
    assert storage["teaclave_queue_depth"] == 0
    assert storage['teaclave_storage_records{namespace="task"}'] >= 1
    scheduler = scrape(observed, "scheduler")
    assert scheduler['teaclave_task_transitions_total{state="RUNNING"}'] >= 1
    assert scheduler['teaclave_task_transitions_total{state="FINISHED"}'] >= 1
    assert scheduler['teaclave_task_stage_seconds_count{stage="staged"}'] >= 1
    execution = wait_until(
        lambda: (
            (found := scrape(observed, "execution"))["teaclave_execution_busy_slots"] == 0 and found
        ),
        "the execution service to be idle",
    )
    assert execution["teaclave_execution_slots"] == observed.config.execution.max_concurrent_tasks
    for stage in ("spawn", "fetch_inputs", "run", "upload_outputs", "execute"):
        assert execution[f'teaclave_task_stage_seconds_count{{stage="{stage}"}}'] >= 1

    observed.supervisor.stop()  # flushes every service's spans
    spans = read_spans(observed.config.trace_path())
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        by_trace[span["context"]["trace_id"]].append(span)
    [trace_id] = {
        s["context"]["trace_id"]
        for s in spans
        if s["attributes"].get("teaclave.task_id") == task_uuid
    }
    trace = by_trace[trace_id]
    names = {s["name"] for s in trace}
    assert names >= TASK_STAGES, TASK_STAGES - names
    assert {
        "teaclave_frontend_service_proto.TeaclaveFrontend/CreateTask",
        "teaclave_management_service_proto.TeaclaveManagement/CreateTask",
        "teaclave_storage_service_proto.TeaclaveStorage/Commit",
        "teaclave_scheduler_service_proto.TeaclaveScheduler/StartUpload",
        "teaclave_scheduler_service_proto.TeaclaveScheduler/UpdateTaskResult",
    } <= names
    services = {s["resource"]["attributes"]["service.name"] for s in trace}
    assert services == set(SERVICES)  # every service has spans in the task's trace
    # One tree: a single root (the client's CreateTask at the frontend), every other
    # span's parent in the trace.
    ids = {s["context"]["span_id"] for s in trace}
    roots = [s for s in trace if s["parent_id"] is None]
    assert [s["name"] for s in roots] == [
        "teaclave_frontend_service_proto.TeaclaveFrontend/CreateTask"
    ]
    assert all(s["parent_id"] in ids for s in trace if s["parent_id"] is not None)
    # Log lines are JSON; those logged while serving the task name its trace.
    lines = [json.loads(line) for line in observed.log.getvalue().splitlines()]
    assert any(
        line.get("trace_id") == trace_id.removeprefix("0x") and "reported" in line["message"]
        for line in lines
    )
