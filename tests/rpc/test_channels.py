"""Attested channels: mutual attestation, allow-lists, pinning and error translation."""

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import rpc_helpers
from rpc_helpers import STREAMED, Echo, ask, register_echo, stream, stream_in

from teaclave.attestation.evidence import AttestationError
from teaclave.config import Config, Endpoints
from teaclave.proto import teaclave_access_control_service_pb2 as pb
from teaclave.proto import teaclave_access_control_service_pb2_grpc as pb_grpc
from teaclave.rpc.channel import attested_channel
from teaclave.services.base import ServiceEnv


@pytest.fixture
def config(tmp_path: Path, free_port: int) -> Config:
    return Config(
        data_dir=str(tmp_path),
        endpoints=Endpoints(access_control=f"127.0.0.1:{free_port}"),
    )


@pytest.fixture
def server(config: Config) -> Iterator[ServiceEnv]:
    env = ServiceEnv.create(config, "access_control")
    srv = env.serve("access_control", register_echo)
    yield env
    srv.stop(0)


def call(env: ServiceEnv, api: str, role: str = "") -> bool:
    peer = env.peer("access_control")
    try:
        return ask(peer, api, role)
    finally:
        peer.close()


def test_allowed_peer_is_identified(server: ServiceEnv, config: Config) -> None:
    frontend = ServiceEnv.create(config, "frontend")
    assert call(frontend, "x", role="frontend")
    management = ServiceEnv.create(config, "management")
    assert call(management, "x", role="management")


def test_peer_outside_allow_list_is_refused(server: ServiceEnv, config: Config) -> None:
    execution = ServiceEnv.create(config, "execution")
    with pytest.raises(grpc.RpcError) as info:
        call(execution, "x")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "peer is 'execution'" in info.value.details()


def streamed(env: ServiceEnv, api: str = "x", role: str = "") -> list[bool]:
    peer = env.peer("access_control")
    try:
        return list(stream(peer, api, role))
    finally:
        peer.close()


def test_a_stream_names_its_allowed_peer_at_every_step(server: ServiceEnv, config: Config) -> None:
    frontend = ServiceEnv.create(config, "frontend")
    assert streamed(frontend, role="frontend") == [True] * STREAMED
    assert streamed(frontend, role="management") == [False] * STREAMED


def test_a_stream_from_a_peer_outside_the_allow_list_is_refused(
    server: ServiceEnv, config: Config
) -> None:
    """The guard checks the peer before a streaming handler runs, as for unary ones."""
    execution = ServiceEnv.create(config, "execution")
    rpc_helpers.started.clear()
    with pytest.raises(grpc.RpcError) as info:
        streamed(execution, role="execution")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "peer is 'execution'" in info.value.details()
    assert rpc_helpers.started == []


def test_errors_in_a_stream_are_translated(server: ServiceEnv, config: Config) -> None:
    frontend = ServiceEnv.create(config, "frontend")
    peer = frontend.peer("access_control")
    try:
        for api, code, details in [
            ("fail", grpc.StatusCode.INVALID_ARGUMENT, "bad api name"),
            ("crash", grpc.StatusCode.INTERNAL, "service internal error"),
        ]:
            answers = stream(peer, api, role="frontend")
            assert next(answers)  # what came before the failure
            with pytest.raises(grpc.RpcError) as info:
                next(answers)
            assert (info.value.code(), info.value.details()) == (code, details)
    finally:
        peer.close()


def test_methods_taking_a_request_stream_are_not_served(server: ServiceEnv, config: Config) -> None:
    """No handler kind escapes the guard: those it does not wrap are not served at all."""
    frontend = ServiceEnv.create(config, "frontend")
    peer = frontend.peer("access_control")
    rpc_helpers.started.clear()
    try:
        with pytest.raises(grpc.RpcError) as info:
            stream_in(peer)
    finally:
        peer.close()
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert rpc_helpers.started == []


def test_errors_are_translated(server: ServiceEnv, config: Config) -> None:
    frontend = ServiceEnv.create(config, "frontend")
    with pytest.raises(grpc.RpcError) as info:
        call(frontend, "fail")
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "bad api name",
    )
    with pytest.raises(grpc.RpcError) as info:
        call(frontend, "crash")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "service internal error"


def test_long_messages_are_cut_not_turned_into_transport_errors(
    server: ServiceEnv, config: Config
) -> None:
    frontend = ServiceEnv.create(config, "frontend")
    with pytest.raises(grpc.RpcError) as info:
        call(frontend, "long")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "x" * 1024


def test_client_refuses_unexpected_measurement_before_sending(
    server: ServiceEnv, config: Config
) -> None:
    calls: list[str] = []
    original = Echo.AuthorizeApi

    def spy(
        self: Echo, request: pb.AuthorizeApiRequest, context: object
    ) -> pb.AuthorizeApiResponse:
        calls.append(request.api)
        return original(self, request, context)

    frontend = ServiceEnv.create(config, "frontend")
    wrong = dataclasses.replace(
        frontend.policy, measurements={"access_control": frozenset({b"\0" * 32})}
    )
    Echo.AuthorizeApi = spy  # type: ignore[method-assign]
    try:
        with pytest.raises(AttestationError, match="unexpected measurement"):
            attested_channel(
                config.endpoints.access_control,
                "access_control",
                policy=wrong,
                identity=frontend.identity,
            )
    finally:
        Echo.AuthorizeApi = original  # type: ignore[method-assign]
    assert calls == []


def test_client_refuses_simulation_unless_allowed(server: ServiceEnv, config: Config) -> None:
    frontend = ServiceEnv.create(config, "frontend")
    strict = dataclasses.replace(frontend.policy, simulation_keys=frozenset())
    with pytest.raises(AttestationError, match="not a trusted one"):
        attested_channel(
            config.endpoints.access_control,
            "access_control",
            policy=strict,
            identity=frontend.identity,
        )


def test_pinned_channel_survives_many_threads(server: ServiceEnv, config: Config) -> None:
    frontend = ServiceEnv.create(config, "frontend")
    peer = frontend.peer("access_control")
    results: list[bool] = []

    def work() -> None:
        for _ in range(20):
            results.append(
                bool(
                    peer.call(
                        lambda ch: pb_grpc.TeaclaveAccessControlStub(ch).AuthorizeApi(
                            pb.AuthorizeApiRequest(user_role="frontend"), timeout=5
                        )
                    ).accept
                )
            )

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peer.close()
    assert results == [True] * 80


class _Unavailable(grpc.RpcError):
    """What another call on the channel ended with: the peer was unavailable."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


def test_a_channel_dropped_as_unavailable_lets_its_calls_in_flight_end(
    server: ServiceEnv, config: Config
) -> None:
    """Another call found the peer unavailable: the next call dials again, and a call
    still in flight on the old channel ends as the peer answers it, not CANCELLED."""
    frontend = ServiceEnv.create(config, "frontend")
    peer = frontend.peer("access_control")
    try:
        dropped = peer.channel()
        answers = stream(peer, role="frontend")
        assert next(answers)
        assert peer.failed(_Unavailable(), dropped)
        assert ask(peer, "x", "frontend")  # on a new channel
        assert peer.channel() is not dropped
        assert list(answers) == [True] * (STREAMED - 1)
    finally:
        peer.close()


def test_a_call_on_a_channel_replaced_twice_meanwhile_still_gets_its_answer(
    server: ServiceEnv, config: Config
) -> None:
    """Calls that found the peer unavailable replaced the channel twice (which closes the
    first one replaced) while a call on the first was still under way: it is closed only
    once that call has ended, which gets the peer's answer (not CANCELLED)."""
    frontend = ServiceEnv.create(config, "frontend")
    peer = frontend.peer("access_control")
    under_way, go_on = threading.Event(), threading.Event()
    answers: list[bool] = []

    def slow(channel: grpc.Channel) -> bool:
        under_way.set()
        assert go_on.wait(10)
        request = pb.AuthorizeApiRequest(api="x", user_role="frontend")
        return bool(pb_grpc.TeaclaveAccessControlStub(channel).AuthorizeApi(request).accept)

    caller = threading.Thread(target=lambda: answers.append(peer.call(slow)))
    try:
        caller.start()
        assert under_way.wait(10)
        for _ in range(2):
            assert peer.failed(_Unavailable(), peer.channel())
            assert ask(peer, "x", "frontend")  # on a new channel
        go_on.set()
        caller.join(10)
        assert answers == [True]
    finally:
        go_on.set()
        peer.close()
