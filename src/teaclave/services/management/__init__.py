"""The management service: functions, files, tasks and the audit log, kept in storage."""

from __future__ import annotations

import threading

import grpc

from teaclave.core.auditlog import CheckpointSigner
from teaclave.proto import teaclave_management_service_pb2_grpc as mgmt_grpc
from teaclave.services.base import ServiceEnv
from teaclave.services.management.audit import Checkpointer
from teaclave.services.management.common import Remembered
from teaclave.services.management.service import ManagementServicer
from teaclave.storage import keys
from teaclave.storage.remote import RemoteStore
from teaclave.storage.watch import Watcher

STOP_GRACE_SECS = 5.0
MAX_WAITING_CALLS = 8
"""WaitTask calls that may wait at once (each holds one of the 16 threads of this
service's server, and of the frontend's)."""


def main(env: ServiceEnv, stop: threading.Event) -> None:
    """Serve TeaclaveManagement over the storage service until ``stop`` is set.

    Audit checkpoints are signed with this instance's attested key of the moment (its
    server certificate, renewed with its evidence, binds the key).
    """
    peer = env.peer("storage")
    store = RemoteStore(peer)
    task_changes: Watcher  # made below: its own commits, left out of its watch, wake its waiters
    remembered = Remembered(on_commit=lambda *commit: task_changes.committed(*commit))  # noqa: PLW0108
    task_changes = Watcher(
        store,
        [keys.TASK],
        max_waiters=MAX_WAITING_CALLS,
        on_changes=remembered.changed,
        with_values=True,
        unless_writer=store.writer,
    )
    servicer = ManagementServicer(
        store, env.config.execution.max_limits(), task_changes, remembered
    )

    def signer() -> CheckpointSigner:
        identity = env.identity
        return CheckpointSigner(identity.key_pem, identity.server_cert_pem)

    checkpoints = threading.Thread(
        target=Checkpointer(store, signer).run,
        args=(stop,),
        name="management-audit-checkpoints",
        daemon=True,
    )

    def register(server: grpc.Server) -> None:
        mgmt_grpc.add_TeaclaveManagementServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]

    task_changes.start()
    server = env.serve("management", register)
    checkpoints.start()
    try:
        stop.wait()
    finally:
        task_changes.close()  # ends its watch; waiting calls answer with the task as it stands
        server.stop(STOP_GRACE_SECS).wait()
        checkpoints.join()
        peer.close()
        task_changes.join()
