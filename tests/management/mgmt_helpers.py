"""Helpers for the management tests: callers of TeaclaveManagement as the frontend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from teaclave.core.errors import Status, TeaclaveError
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.proto import teaclave_management_service_pb2_grpc as mgmt_grpc
from teaclave.rpc.channel import Peer

CMAC = bytes(range(16))
RAW = common.FileCryptoInfo(schema="raw")
GCM = common.FileCryptoInfo(schema="aes-gcm-128", key=bytes(16), iv=bytes(12))


class User:
    """Calls management RPCs with metadata ``id``/``role`` (None: not sent).

    A failed call raises :class:`TeaclaveError` with the gRPC status and details.
    """

    def __init__(self, peer: Peer, user_id: str | None, role: str | None) -> None:
        self.peer = peer
        self.id = user_id or ""
        self._metadata = tuple((k, v) for k, v in (("id", user_id), ("role", role)) if v)

    def __getattr__(self, method: str) -> Callable[[Any], Any]:
        def call(request: Any) -> Any:
            try:
                return self.peer.call(
                    lambda channel: getattr(mgmt_grpc.TeaclaveManagementStub(channel), method)(
                        request, metadata=self._metadata, timeout=30
                    )
                )
            except grpc.RpcError as exc:
                raise TeaclaveError(Status(exc.code().value[0]), exc.details()) from None

        return call


UserFactory = Callable[[str | None, str | None], User]


def refused(status: Status, message: str, call: Callable[[], Any]) -> None:
    """Assert ``call`` fails with exactly ``status`` and ``message``."""
    with pytest.raises(TeaclaveError) as caught:
        call()
    assert (caught.value.status, caught.value.message) == (status, message)


def register_function(user: User, **fields: Any) -> str:
    """A function registered by ``user`` (public builtin-echo unless overridden)."""
    request = fe.RegisterFunctionRequest(
        name="builtin-echo", executor_type="builtin", public=True, usage_quota=-1
    )
    for key, value in fields.items():
        if isinstance(value, list):
            getattr(request, key).extend(value)
        else:
            setattr(request, key, value)
    return str(user.RegisterFunction(request).function_id)


def register_input(user: User, url: str = "https://host/in.bin") -> str:
    request = fe.RegisterInputFileRequest(url=url, cmac=CMAC, crypto_info=GCM)
    return str(user.RegisterInputFile(request).data_id)


def register_output(user: User, url: str = "https://host/out.bin") -> str:
    request = fe.RegisterOutputFileRequest(url=url, crypto_info=GCM)
    return str(user.RegisterOutputFile(request).data_id)
