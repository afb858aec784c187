"""Helpers for the RPC tests: a servicer that names its caller, and a call through a Peer."""

from __future__ import annotations

from teaclave.core.errors import Status, TeaclaveError
from teaclave.proto import teaclave_access_control_service_pb2 as pb
from teaclave.proto import teaclave_access_control_service_pb2_grpc as pb_grpc
from teaclave.rpc.channel import Peer
from teaclave.rpc.server import peer_service


class Echo(pb_grpc.TeaclaveAccessControlServicer):
    """Answers with the caller's attested service name; fails on request."""

    def AuthorizeApi(
        self, request: pb.AuthorizeApiRequest, context: object
    ) -> pb.AuthorizeApiResponse:
        if request.api == "fail":
            raise TeaclaveError(Status.INVALID_ARGUMENT, "bad api name")
        if request.api == "long":
            raise TeaclaveError(Status.INVALID_ARGUMENT, "x" * 100_000)
        if request.api == "crash":
            raise RuntimeError("secret detail")
        return pb.AuthorizeApiResponse(accept=peer_service() == request.user_role)


def register_echo(server: object) -> None:
    pb_grpc.add_TeaclaveAccessControlServicer_to_server(Echo(), server)


def ask(peer: Peer, api: str = "x", role: str = "") -> bool:
    """Whether the Echo behind ``peer`` sees the caller as ``role``."""
    reply = peer.call(
        lambda ch: pb_grpc.TeaclaveAccessControlStub(ch).AuthorizeApi(
            pb.AuthorizeApiRequest(api=api, user_role=role), timeout=5
        )
    )
    return bool(reply.accept)
