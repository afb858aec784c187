"""The clients against a real attested endpoint serving a scripted frontend."""

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from teaclave.client import (
    AttestationFailed,
    FrontendClient,
    FrontendService,
    PermissionDenied,
    ServiceUnavailable,
    TaskFailed,
    TaskStatus,
)
from teaclave.config import Config, Endpoints
from teaclave.core.errors import Status, TeaclaveError, permission_denied
from teaclave.proto import teaclave_common_pb2 as common_pb
from teaclave.proto import teaclave_frontend_service_pb2 as pb
from teaclave.proto import teaclave_frontend_service_pb2_grpc as pb_grpc
from teaclave.services.base import ServiceEnv, simulation_key


class ScriptedFrontend(pb_grpc.TeaclaveFrontendServicer):
    """GetTask and WaitTask: Running for ``running_polls`` calls, then ``final``. Records
    caller metadata.

    WaitTask: UNIMPLEMENTED (as on Teaclave) unless ``waits``; then RESOURCE_EXHAUSTED for
    the first ``busy`` calls; ``on_wait(seconds)`` stands for the time it waits.
    """

    def __init__(self) -> None:
        self.running_polls = 0
        self.final = common_pb.TaskResult()
        self.final_status = TaskStatus.FINISHED
        self.polls = 0
        self.metadata: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.waits = False
        self.busy = 0
        self.wait_calls: list[int] = []
        self.on_wait: Callable[[float], None] = lambda _: None

    def WaitTask(
        self, request: pb.WaitTaskRequest, context: grpc.ServicerContext
    ) -> pb.GetTaskResponse:
        self.wait_calls.append(request.timeout_ms)
        if not self.waits:
            raise TeaclaveError(Status.UNIMPLEMENTED, "Method not found!")
        if len(self.wait_calls) <= self.busy:
            raise TeaclaveError(Status.RESOURCE_EXHAUSTED, "too many calls waiting")
        reply = self.GetTask(pb.GetTaskRequest(task_id=request.task_id), context)
        if reply.status == TaskStatus.RUNNING:
            self.on_wait(request.timeout_ms / 1000)
        return reply

    def GetTask(
        self, request: pb.GetTaskRequest, context: grpc.ServicerContext
    ) -> pb.GetTaskResponse:
        with self.lock:
            self.metadata.append({k: str(v) for k, v in context.invocation_metadata()})
            self.polls += 1
            running = self.polls <= self.running_polls
        status = TaskStatus.RUNNING if running else self.final_status
        return pb.GetTaskResponse(
            task_id=request.task_id,
            function_arguments="{}",
            status=int(status),  # type: ignore[arg-type]
            result=common_pb.TaskResult() if running else self.final,
        )

    def ListFunctions(
        self, request: pb.ListFunctionsRequest, context: grpc.ServicerContext
    ) -> pb.ListFunctionsResponse:
        caller = dict(context.invocation_metadata()).get("id")
        if request.user_id != caller:
            raise permission_denied()
        return pb.ListFunctionsResponse(registered_functions=["function-1"])


class FakeClock:
    """A clock that moves only when the client sleeps; records each sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, secs: float) -> None:
        self.sleeps.append(secs)
        self.now += secs


@pytest.fixture
def sim_key(tmp_path: Path) -> str:
    return simulation_key(tmp_path)


def serve_frontend(config: Config, servicer: ScriptedFrontend) -> grpc.Server:
    """A scripted frontend with a fresh attested identity (as after a restart)."""
    return ServiceEnv.create(config, "frontend").serve(
        "frontend_api",
        lambda s: pb_grpc.add_TeaclaveFrontendServicer_to_server(servicer, s),  # type: ignore[no-untyped-call]
        public=True,
    )


@pytest.fixture
def frontend(tmp_path: Path, free_port: int) -> Iterator[tuple[str, ScriptedFrontend]]:
    address = f"127.0.0.1:{free_port}"
    config = Config(data_dir=str(tmp_path), endpoints=Endpoints(frontend_api=address))
    servicer = ScriptedFrontend()
    server = serve_frontend(config, servicer)
    yield address, servicer
    server.stop(0)


def test_client_recovers_after_the_endpoint_restarts(tmp_path: Path, free_port: int) -> None:
    address = f"127.0.0.1:{free_port}"
    config = Config(data_dir=str(tmp_path), endpoints=Endpoints(frontend_api=address))
    servicer = ScriptedFrontend()
    server = serve_frontend(config, servicer)
    with FrontendClient(address, "alice", "t", simulation_key=simulation_key(tmp_path)) as client:
        assert client.list_functions("alice").registered_functions == ("function-1",)
        server.stop(0).wait()
        with pytest.raises(ServiceUnavailable):
            client.list_functions("alice")
        with pytest.raises(ServiceUnavailable):  # still down: a failed re-dial is no dead end
            client.list_functions("alice")
        server = serve_frontend(config, servicer)  # back, with a new key
        try:
            assert client.list_functions("alice").registered_functions == ("function-1",)
        finally:
            server.stop(0)


def ok(value: bytes) -> common_pb.TaskResult:
    return common_pb.TaskResult(Ok=common_pb.TaskOutputs(return_value=value))


def test_simulation_must_be_allowed_explicitly(frontend: tuple[str, ScriptedFrontend]) -> None:
    address, _ = frontend
    with pytest.raises(AttestationFailed) as info:
        FrontendClient(address, "alice", "t")
    assert "SIMULATED evidence" in info.value.message
    assert "not a trusted one" in info.value.message


def test_simulation_key_of_another_platform_is_refused(
    frontend: tuple[str, ScriptedFrontend], tmp_path_factory: pytest.TempPathFactory
) -> None:
    address, _ = frontend
    other = simulation_key(tmp_path_factory.mktemp("other-platform"))
    with pytest.raises(AttestationFailed, match="not a trusted one"):
        FrontendClient(address, "alice", "t", simulation_key=other)
    with pytest.raises(ValueError, match="64 hex digits"):
        FrontendClient(address, "alice", "t", simulation_key="abc")


def test_result_polls_with_backoff_and_sends_credentials(
    frontend: tuple[str, ScriptedFrontend], sim_key: str
) -> None:
    address, servicer = frontend
    servicer.running_polls = 7
    servicer.final = ok(b"3 common items")
    clock = FakeClock()
    with FrontendClient(address, "alice", "tok", simulation_key=sim_key, clock=clock) as client:
        assert client.verdict.service == "frontend"
        assert client.get_task_result("task-1") == b"3 common items"
    assert servicer.polls == 8
    # 20 ms, doubling, at most 0.5 s; no pause after the last poll.
    assert clock.sleeps == [0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]
    assert all(m["id"] == "alice" and m["token"] == "tok" for m in servicer.metadata)
    assert servicer.wait_calls == [60_000]  # asked once: this platform has no WaitTask


def test_result_waits_without_polling(frontend: tuple[str, ScriptedFrontend], sim_key: str) -> None:
    address, servicer = frontend
    servicer.waits = True
    servicer.running_polls = 1
    servicer.final = ok(b"3 common items")
    clock = FakeClock()
    servicer.on_wait = clock.sleep
    with FrontendClient(address, "alice", "tok", simulation_key=sim_key, clock=clock) as client:
        assert client.get_task_result("task-1", timeout=100) == b"3 common items"
    assert servicer.polls == 2  # both WaitTask calls: at most a minute, then what is left
    assert servicer.wait_calls == [60_000, 40_000]
    assert clock.sleeps == [60.0]  # the platform's wait: the client slept none
    assert all(m["id"] == "alice" and m["token"] == "tok" for m in servicer.metadata)


def test_a_busy_platform_is_polled_meanwhile(
    frontend: tuple[str, ScriptedFrontend], sim_key: str
) -> None:
    address, servicer = frontend
    servicer.waits, servicer.busy = True, 2
    servicer.running_polls = 3
    servicer.final = ok(b"done")
    clock = FakeClock()
    servicer.on_wait = clock.sleep
    with FrontendClient(address, "alice", "tok", simulation_key=sim_key, clock=clock) as client:
        assert client.get_task_result("task-1") == b"done"
    # Refused twice: two GetTask polls with backoff; then WaitTask (once Running, then done).
    assert servicer.polls == 4
    assert len(servicer.wait_calls) == 4
    assert clock.sleeps == [0.02, 0.04, 60.0]


def test_wait_timeout(frontend: tuple[str, ScriptedFrontend], sim_key: str) -> None:
    address, servicer = frontend
    servicer.waits = True
    servicer.running_polls = 10**6
    clock = FakeClock()
    servicer.on_wait = clock.sleep
    with (
        FrontendClient(address, "alice", "tok", simulation_key=sim_key, clock=clock) as client,
        pytest.raises(TimeoutError, match=r"^task task-1 has no result after 0\.25 s$"),
    ):
        client.get_task_result("task-1", timeout=0.25)
    assert servicer.wait_calls == [250]
    with FrontendClient(address, "alice", "tok", simulation_key=sim_key, clock=clock) as client:
        task = client.wait_task("task-1", 0.5)
    assert (task.status, servicer.wait_calls[-1]) == (TaskStatus.RUNNING, 500)


def test_function_error_raises_task_failed(
    frontend: tuple[str, ScriptedFrontend], sim_key: str
) -> None:
    address, servicer = frontend
    servicer.final = common_pb.TaskResult(Err=common_pb.TaskFailure(reason="Invalid order"))
    with (
        FrontendClient(address, "alice", "tok", simulation_key=sim_key) as client,
        pytest.raises(TaskFailed) as info,
    ):
        client.get_task_result("task-1")
    assert info.value.reason == "Invalid order"


def test_timeout(frontend: tuple[str, ScriptedFrontend], sim_key: str) -> None:
    address, servicer = frontend
    servicer.running_polls = 10**6
    clock = FakeClock()
    with (
        FrontendClient(address, "alice", "tok", simulation_key=sim_key, clock=clock) as client,
        pytest.raises(TimeoutError, match=r"^task task-1 has no result after 0\.25 s$"),
    ):
        client.get_task_result("task-1", timeout=0.25)
    # The last pause is cut to the deadline (0.11 s, not 0.16 s); one more poll, then the timeout.
    assert clock.sleeps == pytest.approx([0.02, 0.04, 0.08, 0.11])
    assert servicer.polls == 5


def test_server_errors_are_typed(frontend: tuple[str, ScriptedFrontend], sim_key: str) -> None:
    address, _ = frontend
    with FrontendClient(address, "bob", "tok", simulation_key=sim_key) as client:
        with pytest.raises(PermissionDenied) as info:
            client.list_functions("alice")
        assert isinstance(info.value, TeaclaveError)
        assert info.value.message == "permission denied"


def test_teaclave_compatible_service(frontend: tuple[str, ScriptedFrontend], sim_key: str) -> None:
    host, port = frontend[0].rsplit(":", 1)
    servicer = frontend[1]
    servicer.final = ok(b"done")
    client = FrontendService((host, int(port)), simulation_key=sim_key).connect()
    client.metadata = {"id": "alice", "token": "tok"}
    with client:
        assert client.list_functions("alice") == {"registered_functions": ["function-1"]}
        task = client.get_task("task-1")
        assert task["status"] == int(TaskStatus.FINISHED)
        assert bytes(client.get_task_result("task-1")) == b"done"
    assert servicer.metadata[-1]["id"] == "alice"
