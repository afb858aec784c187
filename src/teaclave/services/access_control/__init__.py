"""The access-control service: the role x API decision for every public call."""

from __future__ import annotations

import threading

import grpc

from teaclave.proto import teaclave_access_control_service_pb2_grpc as acs_grpc
from teaclave.services.access_control.service import AccessControlServicer
from teaclave.services.base import ServiceEnv

STOP_GRACE_SECS = 5.0


def main(env: ServiceEnv, stop: threading.Event) -> None:
    """Serve TeaclaveAccessControl until ``stop`` is set."""

    def register(server: grpc.Server) -> None:
        acs_grpc.add_TeaclaveAccessControlServicer_to_server(AccessControlServicer(), server)  # type: ignore[no-untyped-call]

    server = env.serve("access_control", register)
    try:
        stop.wait()
    finally:
        server.stop(STOP_GRACE_SECS).wait()
