"""The management service: functions, files, tasks and the audit log, kept in storage."""

from __future__ import annotations

import threading

import grpc

from teaclave.proto import teaclave_management_service_pb2_grpc as mgmt_grpc
from teaclave.services.base import ServiceEnv
from teaclave.services.management.service import ManagementServicer
from teaclave.storage.remote import RemoteStore

STOP_GRACE_SECS = 5.0


def main(env: ServiceEnv, stop: threading.Event) -> None:
    """Serve TeaclaveManagement over the storage service until ``stop`` is set."""
    peer = env.peer("storage")
    servicer = ManagementServicer(RemoteStore(peer), env.config.execution.max_limits())

    def register(server: grpc.Server) -> None:
        mgmt_grpc.add_TeaclaveManagementServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]

    server = env.serve("management", register)
    try:
        stop.wait()
    finally:
        server.stop(STOP_GRACE_SECS).wait()
        peer.close()
