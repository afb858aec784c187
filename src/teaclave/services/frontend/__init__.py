"""The frontend service: the public entry point for everything but user management.

Stores nothing; audit entries are buffered in memory (bounded, never dropped:
calls wait for room, then are refused) and saved with the management service
every second, as soon as a batch is waiting, and when the service stops.
"""

from __future__ import annotations

import functools
import logging
import threading

from teaclave.services.base import ServiceEnv
from teaclave.services.frontend.audit import AuditBuffer
from teaclave.services.frontend.service import Frontend, save_logs

log = logging.getLogger(__name__)

STOP_GRACE_SECS = 5.0
AUDIT_FLUSH_SECS = 1.0


def main(env: ServiceEnv, stop: threading.Event) -> None:
    """Serve ``frontend_api`` until ``stop`` is set, then save the last audit entries."""
    authentication, access_control, management = (
        env.peer(name) for name in ("authentication", "access_control", "management")
    )
    audit = AuditBuffer(functools.partial(save_logs, management))
    frontend = Frontend(authentication, access_control, management, audit)
    flusher = threading.Thread(
        target=audit.run, args=(stop, AUDIT_FLUSH_SECS), name="frontend-audit", daemon=True
    )
    try:
        server = env.serve("frontend_api", frontend.register, public=True)
        flusher.start()
        stop.wait()
        server.stop(STOP_GRACE_SECS).wait()
        flusher.join()
        if not audit.flush():
            log.error("audit entries could not be saved before shutdown and are lost")
    finally:
        for peer in (authentication, access_control, management):
            peer.close()
