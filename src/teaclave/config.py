"""Platform configuration: one TOML file, every setting with a documented default.

See ``docs/configuration.md`` and ``config/teaclave.toml`` for the annotated
file. Values are validated on load; a bad file is a :class:`ConfigError` that
names the offending key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from teaclave.core.limits import Limits

SERVICES = (
    "storage",
    "access_control",
    "authentication",
    "management",
    "frontend",
    "scheduler",
    "execution",
)
"""Every service of the platform, in start-up order (dependencies first)."""

SERVER_THREADS = 16
"""Threads of each service's gRPC server: the calls it serves at once."""

ADMIN_PASSWORD_ENV = "TEACLAVE_ADMIN_PASSWORD"  # noqa: S105 (a variable name)
DEFAULT_DATA_DIR = "~/.local/share/teaclave"
"""Where the database and keys live unless the configuration says otherwise."""


class ConfigError(ValueError):
    """The configuration file or an override is invalid."""


@dataclass(frozen=True)
class Endpoints:
    """Listen addresses (``host:port``). Public APIs first, then internal ones."""

    authentication_api: str = "127.0.0.1:7776"
    frontend_api: str = "127.0.0.1:7777"
    authentication: str = "127.0.0.1:17776"
    management: str = "127.0.0.1:17777"
    storage: str = "127.0.0.1:17778"
    access_control: str = "127.0.0.1:17779"
    scheduler: str = "127.0.0.1:17780"


@dataclass(frozen=True)
class StorageConfig:
    """The storage service."""

    # Watch streams open at once (each holds one of the service's 16 server threads;
    # at most 8, so that reads and commits always find threads). The platform's
    # services keep three open (authentication, management, scheduler); more are
    # refused RESOURCE_EXHAUSTED, and their watchers retry.
    max_watch_streams: int = 6


@dataclass(frozen=True)
class AuthConfig:
    """Users, passwords and tokens."""

    admin_user: str = "admin"
    # The first PlatformAdmin's password; if empty, read from $TEACLAVE_ADMIN_PASSWORD.
    # With neither, no admin is created.
    admin_password: str = ""
    # Development only: create Teaclave's well-known admin/teaclave account
    # (refused with attestation.mode = "production").
    dev_teaclave_admin: bool = False
    token_lifetime_secs: int = 24 * 3600
    # argon2id cost (RFC 9106 second recommended option by default).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4


@dataclass(frozen=True)
class SchedulerConfig:
    """Executor liveness."""

    # An executor silent this long is lost; its task becomes Failed.
    executor_timeout_secs: float = 30.0
    # How often executors heartbeat: liveness, and stopping canceled tasks (staged
    # tasks reach a waiting executor at once, never on a heartbeat).
    heartbeat_interval_secs: float = 1.0


MAX_LOG_BYTES = 1 << 20
"""The most ``execution.max_log_bytes`` may be: a task's result travels in one gRPC message."""


@dataclass(frozen=True)
class ExecutionConfig:
    """The execution worker and the URLs it may fetch and write (the URL policy)."""

    # file:// URLs may only name files below these directories.
    file_roots: tuple[str, ...] = ()
    # Largest input or output file handled, in bytes.
    max_file_bytes: int = 1 << 30
    # Largest task summary (return value), in bytes.
    max_summary_bytes: int = 20480
    # A task's log (tasks with the argument "save_log": "true"): at most this many
    # entries and UTF-8 bytes in all (at most MAX_LOG_BYTES); a marker names the rest.
    max_log_lines: int = 1000
    max_log_bytes: int = 65536
    # URL schemes tasks may use.
    url_schemes: tuple[str, ...] = ("file", "http", "https", "s3", "data", "fusion")
    # If not empty, http(s)/s3 URLs may only name these hosts ("host" or "host:port").
    url_hosts: tuple[str, ...] = ()
    # Hosts ("host" or "host:port") allowed although they are or resolve to loopback,
    # private, link-local or other non-public addresses (refused otherwise).
    private_hosts: tuple[str, ...] = ()
    # s3:// endpoint (empty: AWS); credentials come from the usual AWS variables.
    s3_endpoint_url: str = ""
    # Streaming chunk size, in bytes.
    chunk_bytes: int = 1 << 20
    # Platform-internal fusion store and scratch space for encrypted staged files
    # (empty: <data_dir>/fusion and <data_dir>/work).
    fusion_dir: str = ""
    work_dir: str = ""
    # Limits of a sandboxed function (CPU seconds, wall seconds from its start,
    # memory in MiB): the defaults, and the most a function or task may set.
    cpu_secs: float = 10.0
    wall_secs: float = 60.0
    memory_mb: int = 1024
    max_cpu_secs: float = 600.0
    max_wall_secs: float = 3600.0
    max_memory_mb: int = 8192
    # Installed packages Python functions may import beyond the standard library.
    python_modules: tuple[str, ...] = ("numpy",)
    # Wasm functions: fuel per CPU second of the cpu limit (wasmtime counts fuel, not time).
    wasm_fuel_per_sec: int = 1_000_000_000
    # Compiled Wasm modules the execution service keeps in memory, in MiB.
    wasm_cache_mb: int = 256
    # Tasks one execution service runs at once (each in its own process).
    max_concurrent_tasks: int = 4

    def limits(self) -> Limits:
        """The default limits (in a worker's settings: the task's own limits)."""
        return Limits(self.cpu_secs, self.wall_secs, self.memory_mb)

    def max_limits(self) -> Limits:
        """The most a function or task may set."""
        return Limits(self.max_cpu_secs, self.max_wall_secs, self.max_memory_mb)

    def with_limits(self, limits: Limits) -> ExecutionConfig:
        """These settings with ``limits`` as the limits."""
        return replace(self, **asdict(limits))


PROVIDERS = ("simulation", "configfs-tsm", "gramine", "nitro")
"""Evidence providers: simulated, or a TEE's kernel interface (docs/attestation.md)."""
MODES = ("development", "production")


@dataclass(frozen=True)
class AttestationConfig:
    """Evidence for this platform's services and what peers must show."""

    # Evidence provider: "simulation" (no hardware), or the kernel interface of a
    # TEE: "configfs-tsm" (TDX, SEV-SNP guests), "gramine" (SGX), "nitro".
    provider: str = "simulation"
    # "production" refuses the simulation provider and auth.dev_teaclave_admin, and
    # requires an enclave info.
    mode: str = "development"
    # Trust simulated evidence signed by this data directory's simulated platform key
    # (required between services with the simulation provider).
    allow_simulation: bool = True
    # Refuse evidence older than this (its certificate's claims carry the time);
    # services renew their certificate and evidence at half this age.
    max_evidence_age_secs: float = 24 * 3600.0
    # The auditor-signed enclave info naming the accepted measurements of each
    # service (empty: this installation's own measurements, for development), the
    # auditors' public keys ("NAME=path.pem") and how many must have signed it.
    enclave_info: str = ""
    auditors: tuple[str, ...] = ()
    auditor_threshold: int = 1
    # Attestation collateral: a cache directory (empty: <data_dir>/collateral), and
    # where to refresh it (an Intel PCCS-compatible base URL, the AMD KDS base URL).
    collateral_dir: str = ""
    pccs_url: str = ""
    kds_url: str = ""


TRACE_EXPORTERS = ("none", "console", "otlp", "file")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class ObservabilityConfig:
    """Metrics, traces and the log format (docs/operations.md)."""

    # Prometheus metrics over HTTP: 0 (off), or a base port; service number i of
    # SERVICES (storage 0, ..., execution 6) listens on metrics_port + i.
    metrics_port: int = 0
    # Where the metrics endpoints listen: loopback unless set otherwise.
    metrics_host: str = "127.0.0.1"
    # Where spans go: "none", "console" (JSON lines on stdout), "otlp" (OTLP over gRPC to
    # otlp_endpoint; plaintext only to a loopback address, else TLS) or "file" (JSON lines,
    # one file per service process in trace_dir; empty: <data_dir>/traces).
    traces: str = "none"
    otlp_endpoint: str = "127.0.0.1:4317"
    trace_dir: str = ""
    # Log lines as "text" (time level service: message) or "json" (one object per line,
    # with the trace and span ids of the current span).
    log_format: str = "text"

    def metrics_address(self, service: str) -> tuple[str, int] | None:
        """Where ``service`` serves its metrics (None: metrics are off)."""
        if not self.metrics_port:
            return None
        return self.metrics_host, self.metrics_port + SERVICES.index(service)


@dataclass(frozen=True)
class Config:
    """The whole platform configuration."""

    # Absolute, or "~/…" (the service user's home); a relative path in a config file is
    # relative to that file's directory, never to where the platform was started from.
    data_dir: str = DEFAULT_DATA_DIR
    # Largest gRPC message, both directions.
    max_message_bytes: int = 4 * 1024 * 1024
    endpoints: Endpoints = field(default_factory=Endpoints)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    attestation: AttestationConfig = field(default_factory=AttestationConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)

    @property
    def data_path(self) -> Path:
        """The data directory as an absolute path."""
        return Path(self.data_dir).expanduser().resolve()

    def admin_password(self) -> str:
        """The first admin's password from the file or the environment ('' = none)."""
        return self.auth.admin_password or os.environ.get(ADMIN_PASSWORD_ENV, "")

    def execution_settings(self) -> ExecutionConfig:
        """The execution settings with the fusion and work directories made absolute."""
        return replace(
            self.execution,
            fusion_dir=str(Path(self.execution.fusion_dir or self.data_path / "fusion").resolve()),
            work_dir=str(Path(self.execution.work_dir or self.data_path / "work").resolve()),
        )

    def trace_path(self) -> Path:
        """Where the "file" trace exporter writes."""
        return Path(self.observability.trace_dir or self.data_path / "traces").resolve()

    def with_data_dir(self, data_dir: str | Path) -> Config:
        """A copy using another data directory (a relative one: below the working directory)."""
        return replace(self, data_dir=str(Path(data_dir).expanduser().resolve()))


_SECTIONS: dict[str, type[Any]] = {
    "endpoints": Endpoints,
    "storage": StorageConfig,
    "auth": AuthConfig,
    "scheduler": SchedulerConfig,
    "execution": ExecutionConfig,
    "attestation": AttestationConfig,
    "observability": ObservabilityConfig,
}
_MAY_BE_ZERO = frozenset({"observability.metrics_port"})


def _build(cls: type[Any], raw: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown setting {where}{key}")
        if key in _SECTIONS and cls is Config:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table")
            values[key] = _build(_SECTIONS[key], value, f"{key}.")
            continue
        default = getattr(cls(), key)
        if f"{where}{key}" in _MAY_BE_ZERO and value == 0 and not isinstance(value, bool):
            values[key] = 0
            continue
        values[key] = _coerce(value, default, f"{where}{key}")
    return cls(**values)


def _coerce(value: Any, default: Any, name: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false")
        return value
    if (
        isinstance(default, float)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        if value <= 0:
            raise ConfigError(f"{name} must be positive")
        return float(value)
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string")
    return value


def parse_config(text: str) -> Config:
    """Parse TOML text into a :class:`Config` (missing keys take defaults)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from exc
    config: Config = _build(Config, raw, "")
    for name, default in asdict(config.execution.limits()).items():
        if default > getattr(config.execution, f"max_{name}"):
            raise ConfigError(f"execution.{name} must not exceed execution.max_{name}")
    if config.storage.max_watch_streams > SERVER_THREADS // 2:
        raise ConfigError(f"storage.max_watch_streams must not exceed {SERVER_THREADS // 2}")
    if config.execution.max_log_bytes > MAX_LOG_BYTES:
        raise ConfigError(f"execution.max_log_bytes must not exceed {MAX_LOG_BYTES}")
    _check_attestation(config.attestation)
    _check_observability(config.observability)
    if config.attestation.mode == "production" and config.auth.dev_teaclave_admin:
        raise ConfigError(
            "attestation.mode production refuses auth.dev_teaclave_admin (a well-known "
            "admin password): set auth.dev_teaclave_admin = false"
        )
    return config


def _check_attestation(attestation: AttestationConfig) -> None:
    if attestation.provider not in PROVIDERS:
        raise ConfigError(f"attestation.provider must be one of {', '.join(PROVIDERS)}")
    if attestation.mode not in MODES:
        raise ConfigError(f"attestation.mode must be one of {', '.join(MODES)}")
    if attestation.enclave_info and not attestation.auditors:
        raise ConfigError("attestation.enclave_info needs attestation.auditors")
    if attestation.mode == "production":
        if attestation.provider == "simulation" or attestation.allow_simulation:
            raise ConfigError(
                "attestation.mode production refuses simulated evidence: set a hardware "
                "attestation.provider and allow_simulation = false"
            )
        if not attestation.enclave_info:
            raise ConfigError("attestation.mode production needs attestation.enclave_info")


def _check_observability(observability: ObservabilityConfig) -> None:
    if observability.traces not in TRACE_EXPORTERS:
        raise ConfigError(f"observability.traces must be one of {', '.join(TRACE_EXPORTERS)}")
    if observability.log_format not in LOG_FORMATS:
        raise ConfigError(f"observability.log_format must be one of {', '.join(LOG_FORMATS)}")
    if observability.metrics_port + len(SERVICES) - 1 > 65535:
        raise ConfigError(
            f"observability.metrics_port must leave room for {len(SERVICES)} ports below 65536"
        )


def _below(base: Path, path: str) -> str:
    """``path`` made absolute: "~/…" in the home directory, a relative one below ``base``."""
    return str(base / Path(path).expanduser()) if path else path


def _anchored(config: Config, base: Path) -> Config:
    """``config`` with every relative path in it taken relative to ``base``."""
    execution, attestation = config.execution, config.attestation
    observability = config.observability
    auditors = tuple(
        f"{name}={_below(base, key)}" if key else entry
        for entry in attestation.auditors
        for name, _, key in [entry.partition("=")]
    )
    return replace(
        config,
        data_dir=_below(base, config.data_dir),
        execution=replace(
            execution,
            file_roots=tuple(_below(base, root) for root in execution.file_roots),
            fusion_dir=_below(base, execution.fusion_dir),
            work_dir=_below(base, execution.work_dir),
        ),
        attestation=replace(
            attestation,
            enclave_info=_below(base, attestation.enclave_info),
            auditors=auditors,
            collateral_dir=_below(base, attestation.collateral_dir),
        ),
        observability=replace(observability, trace_dir=_below(base, observability.trace_dir)),
    )


def load_config(path: str | Path | None) -> Config:
    """Load the config file at ``path`` (``None``: all defaults).

    Relative paths in the file are relative to the file's directory: the same
    file means the same platform wherever it is started from.
    """
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return _anchored(parse_config(text), Path(path).resolve().parent)
