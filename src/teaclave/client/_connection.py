"""Opening attested channels to the public endpoints, and calling them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from teaclave.attestation.evidence import Appraiser, AttestationPolicy
from teaclave.client.errors import from_platform_error, from_rpc_error
from teaclave.config import AttestationConfig
from teaclave.core.apis import SAFE_TO_REPEAT, api_name
from teaclave.core.errors import TeaclaveError
from teaclave.rpc.channel import attested_channel, never_sent
from teaclave.rpc.trust import trusted_measurements

T = TypeVar("T")

Address = str | tuple[str, int]
"""``"host:port"`` or Teaclave's ``(host, port)`` tuple."""

DEFAULT_RPC_TIMEOUT = 30.0


def default_policy(
    simulation_key: str | None = None,
    *,
    enclave_info: str | Path | None = None,
    auditors: Sequence[str] = (),
    threshold: int = 1,
    max_evidence_age_secs: float | None = AttestationConfig().max_evidence_age_secs,
    appraise: Appraiser | None = None,
) -> AttestationPolicy:
    """What to accept of the platform's services.

    Measurements: those of ``enclave_info`` (a file) if at least ``threshold``
    of the ``auditors`` (``NAME=path.pem``) signed it; without one, those of
    this installation's own code (development). Simulated evidence (which
    proves nothing about hardware) is accepted only from the simulated
    platform whose key fingerprint ``simulation_key`` (64 hex digits;
    ``teaclave attestation simulation-key`` prints it) names. Hardware evidence
    is accepted if ``appraise`` (e.g. :func:`teaclave.transport.appraiser.appraiser`)
    accepts it.
    """
    keys: frozenset[bytes] = frozenset()
    if simulation_key is not None:
        try:
            key = bytes.fromhex(simulation_key)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError("simulation_key must be 64 hex digits (a SHA-256 fingerprint)")
        keys = frozenset({key})
    return AttestationPolicy(
        measurements=trusted_measurements(enclave_info, auditors, threshold),
        simulation_keys=keys,
        max_evidence_age_secs=max_evidence_age_secs,
        appraise=appraise,
    )


def format_address(address: Address) -> str:
    """``address`` as ``host:port``."""
    if isinstance(address, tuple):
        host, port = address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return address


class Connection:
    """An attested channel to one public endpoint plus the caller's credentials.

    Construction verifies the endpoint's attestation evidence; the verdict is
    kept in :attr:`verdict`. Usable as a context manager (closes the channel).
    """

    stub_class: Callable[[grpc.Channel], Any]
    """The generated stub of the endpoint's service (set by subclasses)."""

    def __init__(
        self,
        address: Address,
        service: str,
        *,
        simulation_key: str | None = None,
        policy: AttestationPolicy | None = None,
        timeout: float = DEFAULT_RPC_TIMEOUT,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.address = format_address(address)
        self.timeout = timeout
        self.user_id = ""
        self.token = ""
        self._service = service
        self._policy = policy or default_policy(simulation_key)
        self._max_message_bytes = max_message_bytes
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._dial()

    def _dial(self) -> None:
        """Open the channel, verifying the endpoint's evidence first."""
        try:
            channel, self.verdict = attested_channel(
                self.address,
                self._service,
                policy=self._policy,
                max_message_bytes=self._max_message_bytes,
                timeout=min(self.timeout, 10.0),
            )
        except TeaclaveError as exc:
            raise from_platform_error(exc) from None
        self._channel, self._stub = channel, self.stub_class(channel)

    def _drop(self) -> None:
        """Forget the channel; the next call dials (and verifies) again."""
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None

    @property
    def metadata(self) -> dict[str, str]:
        """The credentials sent with each call (Teaclave's ``{"id", "token"}`` dict)."""
        return {"id": self.user_id, "token": self.token}

    @metadata.setter
    def metadata(self, value: dict[str, str]) -> None:
        self.user_id = value.get("id", "")
        self.token = value.get("token", "")

    def _invoke(
        self, method: str, request: Any, *, credentials: bool = True, timeout: float | None = None
    ) -> Any:
        """Call RPC ``method``, translating gRPC errors to :class:`TeaclaveException`.

        ``timeout``: seconds the call may take (default: the connection's ``timeout``).

        If the endpoint was unavailable (e.g. it restarted with a new key), it is
        dialed and verified again, and the call is retried at once if it never
        reached the endpoint or changes nothing. Otherwise it raises
        :class:`ServiceUnavailable`: whether it took effect is unknown, so
        repeating it is the caller's choice.
        """
        metadata = (("id", self.user_id), ("token", self.token)) if credentials else None
        timeout = self.timeout if timeout is None else timeout
        try:
            return self._send(method, request, metadata, timeout)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or not (
                never_sent(exc) or api_name(method) in SAFE_TO_REPEAT
            ):
                raise from_rpc_error(exc) from None
        try:
            return self._send(method, request, metadata, timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def _send(self, method: str, request: Any, metadata: Any, timeout: float) -> Any:
        """One attempt (dialing first if needed); drops the channel if unavailable."""
        if self._stub is None:
            self._dial()
        try:
            return getattr(self._stub, method)(request, metadata=metadata, timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self._drop()
            raise

    def close(self) -> None:
        """Close the channel."""
        self._drop()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
