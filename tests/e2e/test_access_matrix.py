"""Adversarial access matrix (issue 8): every frontend RPC, caller and target.

The RPCs come from the ``TeaclaveFrontend`` descriptor, so a new RPC joins the
matrix by itself (and fails until its documented rule is written down in
``matrix_helpers.ROLES``/``expect``). Callers are one user per role and relation
(owner / non-owner, participant / non-participant, creator, allow-listed or
not); targets are the resource each RPC acts on: functions (public, private,
disabled), files (sole-owned, jointly owned, written, not written) and tasks in
every state (Created … Running, Finished, Canceled, Failed). Each call must get
the status derived from docs/access-control.md and the task state rules; a call
that is refused must change nothing. Then every call, and so every denial, must
have exactly one audit entry naming the caller, the API and the outcome.
"""

from __future__ import annotations

import bisect
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from e2e_platform import Platform
from google.protobuf.descriptor import MethodDescriptor
from matrix_helpers import (
    CALLERS,
    DENIED,
    FUNCTION_TARGETS,
    FUNCTIONS,
    FUSION_TARGETS,
    LISTING_TARGETS,
    MUTATING,
    OK,
    ROLES,
    STATES,
    Expected,
    World,
    expect,
    poll,
    world_of,
)

from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as pb

FRONTEND = pb.DESCRIPTOR.services_by_name["TeaclaveFrontend"]
FILE_TARGETS = {
    "update_input_file": ("in_a",),
    "get_input_file": ("in_a",),
    "update_output_file": ("out_a", "out_written", "fusion"),
    "register_input_from_output": ("out_a", "out_written", "fusion"),
    "get_output_file": ("out_a", "out_written", "fusion"),
}
NO_TARGET = "none"


def api_name(method: MethodDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method.name).lower()


def fields_of(method: MethodDescriptor) -> set[str]:
    return set(method.input_type.fields_by_name)


def kind_of(method: MethodDescriptor) -> str:
    """What an RPC acts on, from its request's fields."""
    api, fields = api_name(method), fields_of(method)
    if "task_id" in fields:
        return "task"
    if "function_id" in fields:
        return "function"
    if "data_id" in fields:
        return "file"
    if api == "list_functions":
        return "listing"
    if api == "register_fusion_output":
        return "fusion"
    return "none"


def targets_of(method: MethodDescriptor) -> tuple[str, ...]:
    kind = kind_of(method)
    if kind == "task":
        return STATES
    if kind == "function":
        return FUNCTION_TARGETS
    if kind == "file":
        return FILE_TARGETS.get(api_name(method), ("out_a",))
    if kind == "listing":
        return LISTING_TARGETS
    if kind == "fusion":
        return FUSION_TARGETS
    return (NO_TARGET,)


@dataclass(frozen=True)
class Case:
    method: MethodDescriptor
    target: str
    caller: str

    @property
    def api(self) -> str:
        return api_name(self.method)

    @property
    def kind(self) -> str:
        return kind_of(self.method)

    @property
    def id(self) -> str:
        return f"{self.method.name}-{self.target}-{self.caller}"

    def expected(self) -> Expected:
        if self.api not in ROLES:
            pytest.fail(f"no documented rule for {self.method.name}: add it to matrix_helpers")
        return expect(self.api, self.target, self.caller)

    @property
    def changes_target(self) -> bool:
        """The call succeeds and changes its target: it gets a fresh one."""
        return (
            self.api in MUTATING
            and self.api in ROLES
            and expect(self.api, self.target, self.caller).code == OK
        )


def all_cases() -> list[Case]:
    """Resource-free RPCs first, then tasks state by state; within a group, the calls
    that change their target last (Running: a canceled task must be replaced)."""
    methods = list(FRONTEND.methods)
    cases = []
    for method in methods:
        if kind_of(method) != "task":
            for target in targets_of(method):
                cases += [Case(method, target, caller) for caller in CALLERS]
    for state in STATES:
        for method in methods:
            if kind_of(method) == "task":
                group = [Case(method, state, caller) for caller in CALLERS]
                cases += sorted(group, key=lambda case: case.changes_target)
    return cases


CASES = all_cases()
BY_ID = {case.id: case for case in CASES}


@pytest.fixture(scope="module")
def world(platform: Platform) -> Iterator[World]:
    yield from world_of(platform)


# --- requests ------------------------------------------------------------------


def file_url(world: World) -> str:
    return (world.platform.files / f"mx-{secrets.token_hex(6)}.enc").as_uri()


def crypto() -> common.FileCryptoInfo:
    return common.FileCryptoInfo(
        schema="aes-gcm-128", key=secrets.token_bytes(16), iv=secrets.token_bytes(12)
    )


def fusion_owners(world: World, target: str, caller: str) -> list[str]:
    others = [world.users[label].id for label in ("do_a", "do_b", "do_c") if label != caller]
    me = world.users[caller].id
    return {"with_caller": [me, others[0]], "caller_alone": [me], "without_caller": others[:2]}[
        target
    ]


def assignment(world: World, task_id: str, out1: str, out2: str, caller: str) -> Any:
    """Each caller assigns their own files to their slots (a non-participant, to input_data1)."""
    slots: dict[str, tuple[list[pb.DataMap], list[pb.DataMap]]] = {
        "do_a": (
            [pb.DataMap(data_name="input_data1", data_id=world.in1)],
            [pb.DataMap(data_name="output_result1", data_id=out1)],
        ),
        "do_b": ([pb.DataMap(data_name="input_data2", data_id=world.in2)], []),
        "dom_a": ([], [pb.DataMap(data_name="output_result2", data_id=out2)]),
    }
    inputs, outputs = slots.get(
        caller, ([pb.DataMap(data_name="input_data1", data_id=world.own_inputs[caller])], [])
    )
    return pb.AssignDataRequest(task_id=task_id, inputs=inputs, outputs=outputs)


def request_for(world: World, case: Case, fresh: bool) -> Any:
    """A well-formed request of ``case``'s RPC for its target."""
    api, target, caller = case.api, case.target, case.caller
    request_type = getattr(pb, case.method.input_type.name)
    if api == "register_input_file":
        return request_type(url=file_url(world), cmac=secrets.token_bytes(16), crypto_info=crypto())
    if api == "register_output_file":
        return request_type(url=file_url(world), crypto_info=crypto())
    if api == "register_fusion_output":
        return request_type(owner_list=fusion_owners(world, target, caller))
    if api == "register_function":
        return request_type(**world.function_request("public"))
    if api == "list_functions":
        other = "fo2" if caller == "fo" else "fo"
        return request_type(user_id=world.users[caller if target == "self" else other].id)
    if api == "query_audit_logs":
        return request_type(query="", limit=1)
    if case.kind == "function":
        function_id = world.function(target, fresh)
        if api == "update_function":
            return request_type(function_id=function_id, **world.function_request(target))
        if api == "create_task":
            return request_type(
                function_id=function_id, function_arguments='{"message": "m"}', executor="builtin"
            )
        return request_type(function_id=function_id)
    if case.kind == "file":
        data_id = world.file(target, fresh)
        if "url" in fields_of(case.method):
            return request_type(data_id=data_id, url=file_url(world))
        return request_type(data_id=data_id)
    if case.kind == "task":
        task = world.task(target, fresh)
        if api == "assign_data":
            return assignment(world, task.id, task.out1, task.out2, caller)
        return request_type(task_id=task.id)
    return request_type()


def target_id(world: World, case: Case) -> str:
    """The id of a case's shared target ("" for none)."""
    if case.kind == "task":
        return world.task(case.target).id
    if case.kind == "function":
        return world.function(case.target, False)
    if case.kind == "file":
        return world.file(case.target, False)
    return ""


def observe(world: World, case: Case) -> tuple[str, Any]:
    """A shared target's id and state, as its owner or creator sees it."""
    shared = target_id(world, case)
    if case.kind == "task":
        return shared, world.observe_task(shared)
    if case.kind == "function":
        return shared, world.observe_function(case.target)
    if case.kind == "file":
        return shared, world.observe_file(case.target)
    return shared, None


def snapshot(world: World, case: Case) -> tuple[str, Any]:
    """A shared target's id and its state when the matrix first saw it."""
    shared = target_id(world, case)
    if shared not in world.snapshots:
        world.snapshots[shared] = observe(world, case)[1]
    return shared, world.snapshots[shared]


# --- the matrix ----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_access(world: World, case: Case) -> None:
    expected = case.expected()
    fresh = case.changes_target
    request = request_for(world, case, fresh)
    before = None if fresh else snapshot(world, case)
    call = world.call(case.id, case.api, case.caller, case.method.name, request)
    assert call.code == expected.code, (
        f"{case.caller} ({CALLERS[case.caller].about}) calling {case.method.name} on "
        f"{case.target}: got {call.code.name} {call.details!r}, expected {expected.code.name}"
    )
    if expected.code == DENIED:
        assert call.details.startswith("permission denied"), call.details
    if call.code == OK and case.api == "get_function":
        full_view = FUNCTIONS[case.target].public or case.caller in ("admin", "fo")
        stored = world.stored_allowlist(case.target)
        assert list(call.response.user_allowlist) == (stored if full_view else [])
    if not fresh:
        assert observe(world, case) == before, "a call that changes nothing changed its target"


# --- properties of the matrix itself and of its audit entries ----------------------


def test_the_matrix_spans_every_rpc_caller_and_state() -> None:
    methods = {method.name for method in FRONTEND.methods}
    assert {case.method.name for case in CASES} == methods
    undocumented = sorted(
        name for name in methods if api_name(FRONTEND.methods_by_name[name]) not in ROLES
    )
    assert not undocumented, f"RPCs without a documented rule in the matrix: {undocumented}"
    kinds = {case.method.name: case.kind for case in CASES}
    for name in methods:
        group = [case for case in CASES if case.method.name == name]
        targets = {case.target for case in group}
        assert len(group) == len(targets) * len(CALLERS)
        if kinds[name] == "task":
            assert targets == set(STATES)
    expected = {case.expected().code for case in CASES}
    assert {OK, DENIED} <= expected


def audit_message(api: str, code: Any, details: str, role_denial: bool) -> str:
    """The documented message of a call's entry (reference §2.7, docs/audit.md)."""
    if code == OK:
        return api
    if role_denial:
        return f"authenticate to {api}"
    return f"{api}:{details}"


def test_every_call_and_so_every_denial_has_exactly_one_audit_entry(world: World) -> None:
    calls = world.calls
    if not calls:
        pytest.skip("no matrix call ran")
    since = min(call.started for call in calls)
    entries: list[Any] = []

    def in_window(call: Any) -> list[Any]:
        times = [entry.microsecond for entry in entries]
        low = bisect.bisect_left(times, call.started)
        high = bisect.bisect_right(times, call.ended)
        return entries[low:high]

    def all_saved() -> bool:
        entries[:] = sorted(world.audit_entries(since), key=lambda entry: entry.microsecond)
        return all(in_window(call) for call in calls)

    poll(all_saved, timeout=15)  # entries are saved about every second
    problems = []
    denials = 0
    for call in calls:
        found = in_window(call)
        case = BY_ID[call.case]
        role_denial = case.expected().role and call.code == DENIED
        denials += call.code == DENIED
        wanted = (
            call.user.audit,
            audit_message(call.api, call.code, call.details, role_denial),
            call.code == OK,
        )
        got = [(entry.user, entry.message, entry.result) for entry in found]
        if got != [wanted]:
            problems.append(f"{call.case} ({call.code.name}): want {wanted}, got {got}")
    assert not problems, f"{len(problems)} of {len(calls)} calls:\n" + "\n".join(problems[:40])
    assert denials > 0
