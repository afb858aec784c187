"""The storage service: sole owner of the platform database."""

from __future__ import annotations

import threading

import grpc

from teaclave.observability import metrics
from teaclave.proto import teaclave_storage_service_pb2_grpc as pb_grpc
from teaclave.services.base import ServiceEnv
from teaclave.services.storage.observe import RecordCollector
from teaclave.services.storage.service import StorageServicer
from teaclave.storage.sealing import load_or_create_sealing_key
from teaclave.storage.sqlite import SqliteStore

DB_FILE = "teaclave.db"
STOP_GRACE_SECS = 5.0


def main(env: ServiceEnv, stop: threading.Event) -> None:
    """Serve the database of ``env``'s data directory until ``stop`` is set."""
    data = env.config.data_path
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SqliteStore(data / DB_FILE, load_or_create_sealing_key(data))
    try:
        servicer = StorageServicer(
            store,
            page_bytes=env.config.max_message_bytes // 2,
            changes=store.changes,
            max_watches=env.config.storage.max_watch_streams,
        )

        def register(server: grpc.Server) -> None:
            pb_grpc.add_TeaclaveStorageServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]

        with metrics.collecting(RecordCollector(store.count)):
            server = env.serve("storage", register)
            stop.wait()
            store.changes.close()  # end the watch streams: nothing waits out the grace period
            server.stop(STOP_GRACE_SECS).wait()
    finally:
        store.close()
