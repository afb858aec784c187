"""Helpers for the RPC tests: servicers that name their caller (unary, server-streaming,
client-streaming), and calls through a Peer."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

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


STREAMS = "/teaclave.test.Streams/"
STREAMED = 3
"""Messages a stream of the Count method sends, unless asked to fail."""
started: list[str] = []
"""The streaming handlers that began (never one of a refused caller)."""


def count(request: pb.AuthorizeApiRequest, context: object) -> Iterator[pb.AuthorizeApiResponse]:
    """:data:`STREAMED` answers whether the caller is ``user_role`` (the peer is checked at
    each step); after the first, fails as Echo does when asked."""
    started.append("Count")
    for sent in range(STREAMED):
        if sent == 1 and request.api == "fail":
            raise TeaclaveError(Status.INVALID_ARGUMENT, "bad api name")
        if sent == 1 and request.api == "crash":
            raise RuntimeError("secret detail")
        yield pb.AuthorizeApiResponse(accept=peer_service() == request.user_role)


def collect(requests: Iterator[pb.AuthorizeApiRequest], context: object) -> pb.AuthorizeApiResponse:
    """A method that takes a request stream (the guard serves none)."""
    started.append("Collect")
    return pb.AuthorizeApiResponse(accept=len(list(requests)) > 0)


def register_echo(server: grpc.Server) -> None:
    pb_grpc.add_TeaclaveAccessControlServicer_to_server(Echo(), server)
    decode, encode = pb.AuthorizeApiRequest.FromString, pb.AuthorizeApiResponse.SerializeToString
    handlers = {
        "Count": grpc.unary_stream_rpc_method_handler(count, decode, encode),
        "Collect": grpc.stream_unary_rpc_method_handler(collect, decode, encode),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(STREAMS.strip("/"), handlers),)
    )


def ask(peer: Peer, api: str = "x", role: str = "") -> bool:
    """Whether the Echo behind ``peer`` sees the caller as ``role``."""
    reply = peer.call(
        lambda ch: pb_grpc.TeaclaveAccessControlStub(ch).AuthorizeApi(
            pb.AuthorizeApiRequest(api=api, user_role=role), timeout=5
        )
    )
    return bool(reply.accept)


def stream(peer: Peer, api: str = "x", role: str = "") -> Iterator[bool]:
    """The answers of a Count stream behind ``peer``, as they come."""
    request = pb.AuthorizeApiRequest(api=api, user_role=role)
    method = peer.channel().unary_stream(
        STREAMS + "Count",
        request_serializer=pb.AuthorizeApiRequest.SerializeToString,
        response_deserializer=pb.AuthorizeApiResponse.FromString,
    )
    return (reply.accept for reply in method(request, timeout=5))


def stream_in(peer: Peer) -> bool:
    """The answer of the Collect method (a request stream) behind ``peer``."""
    method = peer.channel().stream_unary(
        STREAMS + "Collect",
        request_serializer=pb.AuthorizeApiRequest.SerializeToString,
        response_deserializer=pb.AuthorizeApiResponse.FromString,
    )
    return bool(method(iter([pb.AuthorizeApiRequest(api="x")]), timeout=5).accept)
