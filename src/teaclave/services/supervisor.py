"""Run the platform: one child process per service, started in dependency order.

``python -m teaclave.services NAME`` runs one service in the foreground
(:func:`run_service`). The :class:`Supervisor` starts every service that way,
waits until each listening service accepts TCP connections before starting the
next, merges the children's output into one stream (each line prefixed with
the service name), restarts a crashed child with backoff (giving up, and
stopping everything, after too many crashes in a short time) and on
:meth:`Supervisor.stop` terminates the children in reverse order.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TextIO

from teaclave.assurance import runtime as runtime_manifest
from teaclave.attestation import providers
from teaclave.config import SERVICES, Config
from teaclave.observability.logs import JsonFormatter, wrap
from teaclave.observability.process import start as start_observability
from teaclave.services.base import ServiceEnv, ServiceMain
from teaclave.transport.collateral import CollateralCache

log = logging.getLogger(__name__)


LISTENS: Mapping[str, tuple[str, ...]] = {
    "storage": ("storage",),
    "access_control": ("access_control",),
    "authentication": ("authentication_api", "authentication"),
    "management": ("management",),
    "frontend": ("frontend_api",),
    "scheduler": ("scheduler",),
    "execution": (),
}
"""The configured endpoints (``Endpoints`` fields) each service listens on."""

LOG_FORMAT = "%(asctime)s %(levelname)s {service}: %(message)s"
_TAIL_LINES = 20
_POLL_SECS = 0.05


class SupervisorError(RuntimeError):
    """A service could not be started or kept running."""


def run_service(name: str, config: Config, stop: threading.Event) -> None:
    """Run service ``name`` in this process until ``stop`` is set.

    After start-up it installs the service's runtime manifest (an audit hook, for good).
    """
    if name not in SERVICES:
        raise SupervisorError(f"unknown service {name!r} (one of {', '.join(SERVICES)})")
    module = importlib.import_module(f"teaclave.services.{name}")
    service_main: ServiceMain = module.main
    prepare: Callable[[Config], None] | None = getattr(module, "prepare", None)
    if prepare is not None:  # start-up work beyond what the runtime manifest grants
        prepare(config)
    env = ServiceEnv.create(config, name)
    observability = start_observability(config, name)  # binds and opens before the manifest
    # Start-up done: from here on the process keeps to its runtime manifest.
    # The evidence provider's files stay usable: the service renews its evidence while it runs.
    renewal = providers.interface_paths(config.attestation.provider)
    runtime_manifest.install(
        name, writable=[CollateralCache.from_config(config).directory, *renewal]
    )
    try:
        service_main(env, stop)
    finally:
        observability.close()


def configure_logging(service: str, level: int = logging.INFO, *, json_lines: bool = False) -> None:
    """Log to stderr as ``time level service: message``, or as JSON lines with trace ids."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT.format(service=service)))
    logging.basicConfig(level=level, handlers=[handler], force=True)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM set ``stop`` (main thread only)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def watch_parent(stop: threading.Event) -> None:
    """Set ``stop`` when stdin (a pipe from the supervisor) closes, i.e. the supervisor died."""

    def watch() -> None:
        # os.read, not sys.stdin: a buffered reader blocked here would abort interpreter exit.
        while os.read(sys.stdin.fileno(), 4096):
            pass
        stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _endpoint_address(config: Config, endpoint: str) -> tuple[str, int]:
    address: str = getattr(config.endpoints, endpoint)
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _Child:
    """One running service process and the thread copying its output lines to ``sink``."""

    def __init__(
        self, name: str, proc: subprocess.Popen[bytes], sink: Callable[[str, str], None]
    ) -> None:
        self.name = name
        self.proc = proc
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._sink = sink
        self.pump = threading.Thread(target=self._copy, name=f"output-{name}", daemon=True)
        self.pump.start()

    def _copy(self) -> None:
        stream = self.proc.stdout
        if stream is None:
            return
        with stream:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.tail.append(line)
                self._sink(self.name, line)

    def last_words(self) -> str:
        """The child's last output line, for error messages."""
        return f"; last output: {self.tail[-1]}" if self.tail else ""


class Supervisor:
    """Starts, watches and stops one process per service.

    Use as a context manager (``with Supervisor(config, path) as sup: ...``),
    or :meth:`start`, then :meth:`wait` or :meth:`run_until_signal`, then
    :meth:`stop`. Children inherit the environment (e.g.
    ``TEACLAVE_ADMIN_PASSWORD``) plus ``env``.
    """

    def __init__(
        self,
        config: Config,
        config_path: str | Path | None,
        *,
        services: tuple[str, ...] = SERVICES,
        output: TextIO | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
        stop_grace: float = 10.0,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        first_backoff: float = 0.5,
    ) -> None:
        unknown = sorted(set(services) - set(SERVICES))
        if unknown:
            raise SupervisorError(f"unknown service(s): {', '.join(unknown)}")
        self.config = config
        self.config_path = None if config_path is None else Path(config_path).resolve()
        self.services = tuple(s for s in SERVICES if s in services)
        self.output = output if output is not None else sys.stderr
        self.env = {**os.environ, **(env or {})}
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.first_backoff = first_backoff
        self.failure: SupervisorError | None = None
        self._json = config.observability.log_format == "json"
        self._children: dict[str, _Child] = {}
        self._crashes: dict[str, collections.deque[float]] = {
            name: collections.deque() for name in self.services
        }
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    # Life cycle

    def start(self) -> None:
        """Start every service in order, each listening before the next starts."""
        try:
            with self._lock:
                for name in self.services:
                    self._spawn(name)
        except BaseException:
            self.stop()
            raise
        self._monitor = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._monitor.start()

    def stop(self) -> None:
        """Terminate every child in reverse start order (idempotent)."""
        self._stopping.set()
        monitor = self._monitor
        if monitor is not None and monitor is not threading.current_thread():
            monitor.join()
        self._terminate_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the supervisor stops; True if it did. Raises the failure, if any."""
        stopped = self._stopping.wait(timeout)
        if self.failure is not None:
            raise self.failure
        return stopped

    def run_until_signal(self) -> None:
        """Start, run until SIGINT/SIGTERM or a failure, then stop (main thread only)."""
        with stop_on_signals(self._stopping):
            self.start()
            try:
                self.wait()
            finally:
                self.stop()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Helpers for operators and tests

    def pid(self, name: str) -> int | None:
        """The process id of service ``name`` (None if not running)."""
        with self._lock:
            child = self._children.get(name)
            return child.proc.pid if child and child.proc.poll() is None else None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to service ``name`` (a crash: the supervisor restarts it)."""
        with self._lock:
            self._child(name).proc.send_signal(sig)

    def restart(self, name: str) -> None:
        """Stop service ``name`` and start it again (not counted as a crash)."""
        with self._lock:
            self._terminate(self._child(name))
            self._spawn(name)

    # Internals

    def _child(self, name: str) -> _Child:
        child = self._children.get(name)
        if child is None:
            raise SupervisorError(f"service {name!r} is not supervised")
        return child

    def _command(self, name: str) -> list[str]:
        # -I: neither the working directory nor PYTHON* variables reach the import path.
        command = [sys.executable, "-I", "-u", "-m", "teaclave.services", name, "--supervised"]
        if self.config_path is not None:
            command += ["--config", str(self.config_path)]
        return [*command, "--data-dir", str(self.config.data_path)]

    def _spawn(self, name: str) -> None:
        """Start ``name`` and wait until it listens (lock held)."""
        proc = subprocess.Popen(
            self._command(name),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        child = _Child(name, proc, self._write)
        self._children[name] = child
        try:
            self._await_listening(child)
        except SupervisorError:
            self._terminate(child)  # a hung start is a crash: the watcher restarts it
            raise
        log.info("%s started (pid %d)", name, proc.pid)

    def _write(self, name: str, line: str) -> None:
        """Copy one output line of ``name`` to :attr:`output`, prefixed with the name
        (with JSON logs: as a JSON object, see :func:`~teaclave.observability.logs.wrap`)."""
        text = wrap(name, line) if self._json else f"{name:<14} | {line}"
        with self._write_lock:
            self.output.write(text + "\n")
            self.output.flush()

    def _await_listening(self, child: _Child) -> None:
        deadline = time.monotonic() + self.start_timeout
        for endpoint in LISTENS[child.name]:
            address = _endpoint_address(self.config, endpoint)
            while not self._accepts(address):
                if child.proc.poll() is not None:
                    child.pump.join(timeout=1)
                    raise SupervisorError(
                        f"{child.name} exited with code {child.proc.returncode} before "
                        f"listening on {address[0]}:{address[1]}{child.last_words()}"
                    )
                if self._stopping.is_set():
                    raise SupervisorError(f"stopped while {child.name} was starting")
                if time.monotonic() > deadline:
                    raise SupervisorError(
                        f"{child.name} did not listen on {address[0]}:{address[1]} within "
                        f"{self.start_timeout:g} s{child.last_words()}"
                    )
                time.sleep(_POLL_SECS)

    @staticmethod
    def _accepts(address: tuple[str, int]) -> bool:
        try:
            with socket.create_connection(address, timeout=0.5):
                return True
        except OSError:
            return False

    def _watch(self) -> None:
        """Restart crashed children until stopped or out of restarts."""
        while not self._stopping.wait(_POLL_SECS):
            with self._lock:
                crashed = [c for c in self._children.values() if c.proc.poll() is not None]
            for child in crashed:
                try:
                    self._recover(child)
                except SupervisorError as exc:
                    if self._stopping.is_set():
                        return
                    self.failure = exc
                    log.error("%s", exc)
                    self._stopping.set()
                    self._terminate_all()
                    return

    def _recover(self, child: _Child) -> None:
        now = time.monotonic()
        crashes = self._crashes[child.name]
        while crashes and now - crashes[0] > self.restart_window:
            crashes.popleft()
        if len(crashes) >= self.max_restarts:
            raise SupervisorError(
                f"{child.name} crashed {len(crashes) + 1} times within "
                f"{self.restart_window:g} s (last exit code {child.proc.returncode}); "
                f"giving up{child.last_words()}"
            )
        delay = self.first_backoff * 2 ** len(crashes)
        crashes.append(now)
        log.warning(
            "%s exited with code %s; restarting in %.1f s",
            child.name,
            child.proc.returncode,
            delay,
        )
        if self._stopping.wait(delay):
            return
        with self._lock:
            if self._children.get(child.name) is child and not self._stopping.is_set():
                self._terminate(child)  # reap it and release its pipes
                try:
                    self._spawn(child.name)
                except SupervisorError as exc:  # a new crash: the next round counts it
                    if not self._stopping.is_set():
                        log.warning("%s", exc)

    def _terminate(self, child: _Child) -> None:
        """SIGTERM, then SIGKILL after the grace period; reap and drain the output."""
        proc = child.proc
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s; killing it", child.name, self.stop_grace)
                proc.kill()
                proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        child.pump.join(timeout=5)

    def _terminate_all(self) -> None:
        with self._lock:
            for name in reversed(self.services):
                child = self._children.pop(name, None)
                if child is not None:
                    self._terminate(child)
