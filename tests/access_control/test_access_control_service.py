"""The access-control service over RA-TLS gRPC (reference §2.8, §4.2, functional tests §10.4)."""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from threading import Event, Thread

import grpc
import pytest

from teaclave.config import Config, Endpoints
from teaclave.proto import teaclave_access_control_service_pb2 as acs
from teaclave.proto import teaclave_access_control_service_pb2_grpc as acs_grpc
from teaclave.services import access_control
from teaclave.services.base import ServiceEnv

Runner = Callable[..., AbstractContextManager[Event]]
Ask = Callable[[str, str], bool]


@pytest.fixture
def config(tmp_path: Path, loopback_endpoints: Endpoints) -> Config:
    return Config(data_dir=str(tmp_path), endpoints=loopback_endpoints)


@pytest.fixture
def ask_as(config: Config, service_runner: Runner) -> Iterator[Callable[[str], Ask]]:
    """The service running; ``ask_as(peer)(role, api)`` asks it as that peer service."""
    env = ServiceEnv.create(config, "access_control")
    peers = []
    with service_runner(access_control.main, env, ("access_control",)):

        def ask_as(service: str) -> Ask:
            peer = ServiceEnv.create(config, service).peer("access_control")
            peers.append(peer)

            def ask(role: str, api: str) -> bool:
                request = acs.AuthorizeApiRequest(user_role=role, api=api)
                return bool(
                    peer.call(
                        lambda ch: acs_grpc.TeaclaveAccessControlStub(ch).AuthorizeApi(
                            request, timeout=10
                        )
                    ).accept
                )

            return ask

        yield ask_as
        for peer in peers:
            peer.close()


@pytest.mark.parametrize(
    ("role", "api", "accept"),
    [
        ("PlatformAdmin", "Arbitrary_api", True),
        ("DataOwner", "get_function", True),
        ("DataOwner-x", "get_function", True),
        ("DataOwnerManager", "create_task", True),
        ("FunctionOwner", "invoke_task", False),
        ("FunctionOwner", "register_function", True),
        ("DataOwner", "register_function", False),
        ("DataOwnerManager", "query_audit_logs", True),
        ("Invalid", "query_audit_logs", False),
        ("Invalid", "get_function", False),
        ("", "get_function", False),
    ],
)
def test_decisions(ask_as: Callable[[str], Ask], role: str, api: str, accept: bool) -> None:
    assert ask_as("frontend")(role, api) is accept


def test_concurrent_callers(ask_as: Callable[[str], Ask]) -> None:
    ask = ask_as("frontend")
    answers: list[bool] = []

    def worker() -> None:
        for _ in range(10):
            answers.append(ask("PlatformAdmin", "arbitrary_api"))
            answers.append(not ask("FunctionOwner", "invoke_task"))

    threads = [Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [True] * 200


def test_only_frontend_and_management_may_ask(ask_as: Callable[[str], Ask]) -> None:
    assert ask_as("management")("DataOwner", "get_task")
    with pytest.raises(grpc.RpcError) as caught:
        ask_as("scheduler")("DataOwner", "get_task")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
