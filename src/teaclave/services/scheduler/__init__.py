"""The scheduler service: hands staged tasks to executors and watches their liveness."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc

from teaclave.proto import teaclave_scheduler_service_pb2_grpc as pb_grpc
from teaclave.services.base import ServiceEnv
from teaclave.services.scheduler.liveness import Liveness
from teaclave.services.scheduler.queue import StagedQueue
from teaclave.services.scheduler.service import SchedulerServicer
from teaclave.services.scheduler.tasks import Scheduler
from teaclave.storage.remote import RemoteStore

STOP_GRACE_SECS = 5.0
MAX_WAITING_EXECUTORS = 8
"""Executors that may wait for a task at once (each holds one of the server's 16 threads)."""


def main(
    env: ServiceEnv, stop: threading.Event, *, clock: Callable[[], float] = time.monotonic
) -> None:
    """Serve the scheduler API until ``stop`` is set.

    ``clock``: what executor liveness is measured by, in seconds (tests pass a fake).
    """
    storage = env.peer("storage")
    store = RemoteStore(storage)
    queue = StagedQueue(store, store, max_waiters=MAX_WAITING_EXECUTORS, writer=store.writer)
    timeout = env.config.scheduler.executor_timeout_secs
    scheduler = Scheduler(store, Liveness(timeout, clock), queue)
    servicer = SchedulerServicer(scheduler)

    def register(server: grpc.Server) -> None:
        pb_grpc.add_TeaclaveSchedulerServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]

    queue.watcher.start()
    server = env.serve("scheduler", register)
    watcher = threading.Thread(target=scheduler.watch, args=(stop,), name="scheduler-liveness")
    watcher.start()
    stop.wait()
    queue.watcher.close()  # ends its watch; waiting executors are answered
    server.stop(STOP_GRACE_SECS).wait()
    watcher.join()
    storage.close()
    queue.watcher.join()
