"""The generic frontend path: routes from the descriptors, audit formatting and buffering."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from teaclave.config import Config
from teaclave.core.apis import api_name
from teaclave.core.auditlog import audit_user
from teaclave.core.errors import Status, TeaclaveError
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.services.base import ServiceEnv
from teaclave.services.frontend.audit import BACKLOGGED, AuditBuffer, entry, peer_ip
from teaclave.services.frontend.service import CALL_TIMEOUT_SECS, FRONTEND, Frontend, routes

# Reference §2.5, in the order of the table (then ours, in the order of the descriptor).
APIS = [
    "register_input_file",
    "register_output_file",
    "update_input_file",
    "update_output_file",
    "register_fusion_output",
    "register_input_from_output",
    "get_output_file",
    "get_input_file",
    "register_function",
    "get_function",
    "get_function_usage_stats",
    "update_function",
    "list_functions",
    "delete_function",
    "disable_function",
    "create_task",
    "get_task",
    "assign_data",
    "approve_task",
    "revoke_task_approval",
    "invoke_task",
    "cancel_task",
    "query_audit_logs",
    "wait_task",  # our extension
]


def test_every_rpc_has_a_route_with_its_access_control_name() -> None:
    table = routes()
    assert [route.api for route in table.values()] == APIS
    for name, route in table.items():
        assert route.target.name == name
        assert route.target.containing_service.name == "TeaclaveManagement"
        assert route.request_type.DESCRIPTOR is FRONTEND.methods_by_name[name].input_type


def test_calls_that_wait_may_be_forwarded_for_as_long() -> None:
    timeouts = {name: route.timeout for name, route in routes().items()}
    assert timeouts.pop("WaitTask") == CALL_TIMEOUT_SECS + 60
    assert set(timeouts.values()) == {CALL_TIMEOUT_SECS}


def test_api_names() -> None:
    assert api_name("GetFunctionUsageStats") == "get_function_usage_stats"
    assert api_name("RegisterInputFromOutput") == "register_input_from_output"


class CallDetails:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_the_handler_serves_exactly_the_descriptor(tmp_path: Path) -> None:
    peer = ServiceEnv.create(Config(data_dir=str(tmp_path)), "frontend").peer("management")
    handler = Frontend(peer, peer, peer, AuditBuffer(lambda _: None)).handler()
    for method in FRONTEND.methods:
        found = handler.service(CallDetails(f"/{FRONTEND.full_name}/{method.name}"))
        assert found is not None
        assert found.unary_unary is not None
    for missing in ("SaveLogs", "UserLogin", "registerInputFile"):
        assert handler.service(CallDetails(f"/{FRONTEND.full_name}/{missing}")) is None


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:50000", "::ffff:127.0.0.1"),
        ("ipv4:10.1.2.3:1", "::ffff:10.1.2.3"),
        ("ipv6:[::1]:50000", "::1"),
        ("ipv6:%5B2001:db8::7%5D:443", "2001:db8::7"),
        ("ipv6:[fe80::1%25eth0]:443", "fe80::1"),
        ("unix:/tmp/socket", "::"),
        ("garbage", "::"),
    ],
)
def test_peer_ip(peer: str, address: str) -> None:
    assert peer_ip(peer) == ipaddress.IPv6Address(address).packed


@pytest.mark.parametrize(
    ("role", "shown"),
    [
        ("PlatformAdmin", "PlatformAdmin"),
        ("FunctionOwner", "FunctionOwner"),
        ("DataOwner-x", 'DataOwner("x")'),
        ("DataOwnerManager-a-b", 'DataOwnerManager("a-b")'),
        ("Bogus", "Invalid"),
    ],
)
def test_audit_user(role: str, shown: str) -> None:
    assert audit_user("alice", role) == f"{{ user: alice, role: {shown} }}"


def test_entries_carry_microseconds() -> None:
    made = entry(b"\0" * 16, "u", "m", True)
    assert made.microsecond > 1_700_000_000_000_000
    assert (made.user, made.message, made.result) == ("u", "m", True)


class Management:
    """A SaveLogs stand-in that can be switched off."""

    def __init__(self) -> None:
        self.up = False
        self.saved: list[str] = []

    def save(self, entries: Sequence[common.Entry]) -> None:
        if not self.up:
            raise TeaclaveError(Status.UNAVAILABLE, "management is down")
        self.saved.extend(e.message for e in entries)


def test_unsaved_entries_are_kept_and_retried() -> None:
    management = Management()
    buffer = AuditBuffer(management.save)
    for i in range(3):
        buffer.add(entry(b"", "", str(i), True))
    assert not buffer.flush()
    buffer.add(entry(b"", "", "3", True))
    management.up = True
    assert buffer.flush()
    assert management.saved == ["0", "1", "2", "3"]
    assert buffer.flush()
    assert management.saved == ["0", "1", "2", "3"]


def test_a_full_buffer_refuses_rather_than_drops(caplog: pytest.LogCaptureFixture) -> None:
    management = Management()
    buffer = AuditBuffer(management.save, capacity=3, wait_secs=0.05)
    for i in range(3):
        buffer.add(entry(b"", "", str(i), True))
    for _ in range(2):
        with pytest.raises(TeaclaveError) as caught:
            buffer.reserve(entry(b"", "", "x", True))
        assert (caught.value.status, caught.value.message) == (Status.UNAVAILABLE, BACKLOGGED)
    assert not buffer.flush()
    management.up = True
    assert buffer.flush()
    assert management.saved[:3] == ["0", "1", "2"]
    assert buffer.flush()
    assert management.saved[3:] == ["audit log backlogged: 2 calls refused unaudited"]
    assert "2 calls refused" in caplog.text


def test_a_waiting_call_gets_room_once_entries_are_saved() -> None:
    management = Management()
    management.up = True
    buffer = AuditBuffer(management.save, capacity=1, wait_secs=10)
    buffer.add(entry(b"", "", "0", True))
    flusher = threading.Timer(0.1, buffer.flush)
    flusher.start()
    buffer.add(entry(b"", "", "1", True))  # waits for the flush
    flusher.join()
    assert buffer.flush()
    assert management.saved == ["0", "1"]


def test_a_slot_left_unfilled_records_its_default() -> None:
    management = Management()
    management.up = True
    buffer = AuditBuffer(management.save, capacity=1, wait_secs=0)
    with pytest.raises(RuntimeError), buffer.reserve(entry(b"", "", "default", False)):
        raise RuntimeError
    assert buffer.flush()
    with buffer.reserve(entry(b"", "", "unused", False)) as slot:
        slot.record(entry(b"", "", "recorded", True))
    slot.record(entry(b"", "", "late", True))  # one entry per slot
    assert buffer.flush()
    assert management.saved == ["default", "recorded"]


class Unreachable:
    """A peer that must not be called."""

    def call(self, *_: object, **__: object) -> None:
        raise AssertionError("a backlogged call was handled")


class Context:
    def peer(self) -> str:
        return "ipv4:127.0.0.1:5"


def test_a_backlogged_audit_log_refuses_calls_before_handling_them() -> None:
    peer: Any = Unreachable()
    frontend = Frontend(peer, peer, peer, AuditBuffer(lambda _: None, capacity=0, wait_secs=0))
    handle: Any = frontend.handler().service(CallDetails(f"/{FRONTEND.full_name}/GetTask"))
    with pytest.raises(TeaclaveError) as caught:
        handle.unary_unary(fe.GetTaskRequest(), Context())
    assert (caught.value.status, caught.value.message) == (Status.UNAVAILABLE, BACKLOGGED)
