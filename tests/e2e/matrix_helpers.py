"""The adversarial access matrix: who the callers are, what each call should get, and a
world of prepared resources (functions, files, tasks in every state) on one platform.

The expectations (:func:`expect`) are written from docs/access-control.md and the
reference (§2.5, §3.6, §4), not from ``teaclave.core.access``: the rule table in
prose, the task state rules, and the callers' fixed relations to the resources.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from e2e_helpers import encrypt
from e2e_platform import Platform, wait_for
from teaclave_fixtures import PSI_DIR

from teaclave.client import (
    DataMap,
    FrontendClient,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    OwnerList,
    TaskStatus,
    TeaclaveException,
    default_policy,
)
from teaclave.proto import teaclave_frontend_service_pb2 as pb
from teaclave.proto import teaclave_frontend_service_pb2_grpc as pb_grpc
from teaclave.rpc.channel import attested_channel

Code = grpc.StatusCode
OK, DENIED, UNKNOWN, INVALID = (
    Code.OK,
    Code.PERMISSION_DENIED,
    Code.UNKNOWN,
    Code.INVALID_ARGUMENT,
)

# --- callers -------------------------------------------------------------------

ADMIN, FUNCTION_OWNER = "PlatformAdmin", "FunctionOwner"
MANAGER, DATA_OWNER = "DataOwnerManager", "DataOwner"
DATA_OWNERS = frozenset({MANAGER, DATA_OWNER})


@dataclass(frozen=True)
class Who:
    """A caller of the matrix: role, attribute and what they are to the resources."""

    kind: str
    attribute: str = ""
    about: str = ""


CALLERS: dict[str, Who] = {
    "admin": Who(ADMIN, about="PlatformAdmin; owns, creates and participates in nothing"),
    "fo": Who(FUNCTION_OWNER, about="owns every function; participant (private function)"),
    "fo2": Who(FUNCTION_OWNER, about="owns no function; participant of nothing"),
    "dom_a": Who(MANAGER, "a", about="allow-listed by attribute; participant (an output)"),
    "dom_b": Who(MANAGER, "b", about="not allow-listed; participant of nothing"),
    "do_a": Who(DATA_OWNER, "a", about="allow-listed by attribute; task creator; owns files"),
    "do_b": Who(DATA_OWNER, "b", about="allow-listed by user id; participant; fusion co-owner"),
    "do_c": Who(DATA_OWNER, "c", about="not allow-listed; participant of nothing"),
}

# What the callers are to the prepared resources (the world builds them so).
FUNCTION_OWNER_LABEL = "fo"
ALLOW_LISTED = frozenset({"dom_a", "do_a", "do_b"})  # private: attribute:a, user:<do_b>
CREATOR = "do_a"
PARTICIPANTS = frozenset({"do_a", "do_b", "dom_a", "fo"})  # inputs, outputs, private fn owner
FILE_OWNERS: dict[str, frozenset[str]] = {
    "in_a": frozenset({"do_a"}),
    "out_a": frozenset({"do_a"}),
    "out_written": frozenset({"do_a"}),
    "fusion": frozenset({"do_a", "do_b"}),
}
WRITTEN_FILES = frozenset({"out_written"})

# --- task states ---------------------------------------------------------------

STATES = (
    "Created",
    "DataAssigned",
    "Approved",
    "Canceled",
    "Finished",
    "Failed",
    "Staged",
    "Running",
)
"""In the order the matrix visits them (Staged and Running need the executor held)."""
BEFORE_STAGING = frozenset({"Created", "DataAssigned", "Approved"})
ENDED = frozenset({"Canceled", "Finished", "Failed"})
APPROVED_BY: dict[str, frozenset[str]] = {
    "Created": frozenset(),  # nothing assigned yet
    "DataAssigned": frozenset({"do_b", "fo"}),  # all assigned, two of four approved
    "Approved": PARTICIPANTS,
    "Canceled": frozenset(),  # canceled while Created
    "Finished": PARTICIPANTS,
    "Failed": PARTICIPANTS,
    "Staged": PARTICIPANTS,
    "Running": PARTICIPANTS,
}


@dataclass(frozen=True)
class FunctionTarget:
    """A function owned by ``fo``, as it stands when the matrix calls it."""

    public: bool
    disabled: bool = False
    allow_listed: frozenset[str] = frozenset()
    """Callers its allow-list names (disabling a function clears its allow-list)."""


FUNCTIONS: dict[str, FunctionTarget] = {
    "public": FunctionTarget(public=True),
    "private": FunctionTarget(public=False, allow_listed=ALLOW_LISTED),
    "disabled": FunctionTarget(public=True, disabled=True),
    "disabled_private": FunctionTarget(public=False, disabled=True),
}
FUNCTION_TARGETS = tuple(FUNCTIONS)
LISTING_TARGETS = ("self", "other")
FUSION_TARGETS = ("with_caller", "caller_alone", "without_caller")

# --- the rule table, as documented ----------------------------------------------

ROLES: dict[str, frozenset[str]] = {
    "register_input_file": DATA_OWNERS,
    "register_output_file": DATA_OWNERS,
    "update_input_file": DATA_OWNERS,
    "update_output_file": DATA_OWNERS,
    "register_fusion_output": DATA_OWNERS,
    "register_input_from_output": DATA_OWNERS,
    "get_input_file": DATA_OWNERS,
    "get_output_file": DATA_OWNERS,
    "register_function": frozenset({FUNCTION_OWNER}),
    "get_function": DATA_OWNERS | {FUNCTION_OWNER},
    "get_function_usage_stats": DATA_OWNERS | {FUNCTION_OWNER},
    "update_function": frozenset({FUNCTION_OWNER}),
    "delete_function": frozenset({FUNCTION_OWNER}),
    "disable_function": frozenset({FUNCTION_OWNER}),
    "list_functions": DATA_OWNERS | {FUNCTION_OWNER},
    "create_task": DATA_OWNERS,
    "get_task": DATA_OWNERS | {FUNCTION_OWNER},
    "wait_task": DATA_OWNERS | {FUNCTION_OWNER},  # our extension: as get_task
    "approve_task": DATA_OWNERS | {FUNCTION_OWNER},
    "revoke_task_approval": DATA_OWNERS | {FUNCTION_OWNER},
    "assign_data": DATA_OWNERS,
    "invoke_task": DATA_OWNERS,
    "cancel_task": DATA_OWNERS,
    "query_audit_logs": DATA_OWNERS | {FUNCTION_OWNER},
}
"""Roles allowed besides PlatformAdmin (who passes every role check), per API."""

MUTATING = frozenset(
    {
        "update_output_file",  # retires the old registration
        "update_function",
        "delete_function",
        "disable_function",
        "assign_data",
        "approve_task",
        "revoke_task_approval",
        "invoke_task",
        "cancel_task",
    }
)
"""APIs whose success changes their target: such cases get a fresh target of their own."""


@dataclass(frozen=True)
class Expected:
    """The status a call should get; ``role``: refused by the role check (at the frontend)."""

    code: Code
    role: bool = False


def may_use_function(caller: str, target: str) -> bool:
    """is_admin or function_public or owns_function or allow_listed."""
    function = FUNCTIONS[target]
    return (
        CALLERS[caller].kind == ADMIN
        or function.public
        or caller == FUNCTION_OWNER_LABEL
        or caller in function.allow_listed
    )


def expect(api: str, target: str, caller: str) -> Expected:
    """What ``caller`` gets calling ``api`` on ``target`` (a state for task APIs)."""
    kind = CALLERS[caller].kind
    admin = kind == ADMIN
    if not admin and kind not in ROLES[api]:
        return Expected(DENIED, role=True)
    if api in ("register_input_file", "register_output_file", "register_function"):
        return Expected(OK)
    if api == "query_audit_logs":
        return Expected(OK)  # non-admins see the entries about themselves
    if api in ("get_input_file", "get_output_file"):
        return Expected(OK if caller in FILE_OWNERS[target] else DENIED)
    if api in ("update_input_file", "update_output_file"):
        if FILE_OWNERS[target] != {caller}:
            return Expected(DENIED)  # only a sole owner, admins included
        return Expected(DENIED if target in WRITTEN_FILES else OK)  # a written output stays
    if api == "register_input_from_output":
        if caller not in FILE_OWNERS[target]:
            return Expected(DENIED)
        return Expected(OK if target in WRITTEN_FILES else INVALID)  # "invalid output file"
    if api == "register_fusion_output":
        return Expected(OK if target == "with_caller" else DENIED)
    if api in ("get_function", "get_function_usage_stats"):
        return Expected(OK if may_use_function(caller, target) else DENIED)
    if api == "update_function":
        if caller != FUNCTION_OWNER_LABEL:
            return Expected(DENIED)
        return Expected(DENIED if FUNCTIONS[target].disabled else OK)
    if api == "delete_function":
        return Expected(OK if caller == FUNCTION_OWNER_LABEL else DENIED)
    if api == "disable_function":
        return Expected(OK if admin or caller == FUNCTION_OWNER_LABEL else DENIED)
    if api == "list_functions":
        return Expected(OK if admin or target == "self" else DENIED)
    if api == "create_task":
        if not may_use_function(caller, target) or FUNCTIONS[target].disabled:
            return Expected(DENIED)
        return Expected(OK)
    return _expect_task(api, target, caller)


def _expect_task(api: str, state: str, caller: str) -> Expected:
    admin = CALLERS[caller].kind == ADMIN
    participant = caller in PARTICIPANTS
    if api in ("get_task", "wait_task"):  # WaitTask: its request waits 0 s, so it answers now
        return Expected(OK if participant else DENIED)
    if api == "assign_data":  # each caller sends their own files for their own slots
        if not participant:
            return Expected(DENIED)
        return Expected(OK if state == "Created" else UNKNOWN)
    if api == "approve_task":
        if not participant:
            return Expected(DENIED)
        return Expected(OK if state == "DataAssigned" else UNKNOWN)
    if api == "revoke_task_approval":
        if not participant:
            return Expected(DENIED)
        if state not in BEFORE_STAGING or caller not in APPROVED_BY[state]:
            return Expected(UNKNOWN)
        return Expected(OK)
    if api == "invoke_task":
        if caller != CREATOR:
            return Expected(DENIED)
        return Expected(OK if state == "Approved" else UNKNOWN)
    if api == "cancel_task":
        if not (admin or caller == CREATOR):
            return Expected(DENIED)
        return Expected(UNKNOWN if state in ENDED else OK)
    raise KeyError(f"no expectation for {api}")


def audit_user(user_id: str, who: Who) -> str:
    """How an audit entry names a caller (reference §2.7)."""
    role = f'{who.kind}("{who.attribute}")' if who.kind in DATA_OWNERS else who.kind
    return f"{{ user: {user_id}, role: {role} }}"


# --- the world -----------------------------------------------------------------

PSI0 = (PSI_DIR / "psi0.txt").read_bytes()
PSI1 = (PSI_DIR / "psi1.txt").read_bytes()
ECHO = {
    "name": "builtin-echo",
    "description": "echo",
    "executor_type": "builtin",
    "arguments": [pb.FunctionArgument(key="message", allow_overwrite=True)],
    "usage_quota": -1,
}


@dataclass
class User:
    """A caller's identity and a client for preparing resources outside the matrix."""

    label: str
    who: Who
    client: FrontendClient

    @property
    def id(self) -> str:
        return self.client.user_id

    @property
    def audit(self) -> str:
        return audit_user(self.id, self.who)


@dataclass
class Call:
    """One matrix call: who, what, the outcome and when (µs since the epoch)."""

    case: str
    api: str
    user: User
    code: Code
    details: str
    response: Any
    started: int
    ended: int


@dataclass
class PreparedTask:
    """A task and the files its slots take (``out1``/``out2`` are its own outputs)."""

    id: str
    out1: str
    out2: str
    shared: bool = False


@dataclass
class World:
    """Users, a raw frontend stub and the prepared resources, on one platform."""

    platform: Platform
    users: dict[str, User] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    invoked: list[str] = field(default_factory=list)
    functions: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, PreparedTask] = field(default_factory=dict)
    own_inputs: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, Any] = field(default_factory=dict)
    """Shared targets' states when first seen, by id."""
    psi: str = ""
    running_consumed: bool = False

    def start(self) -> None:
        for label, who in CALLERS.items():
            self.users[label] = User(label, who, self.platform.new_user(who.kind, who.attribute))
        policy = default_policy(self.platform.simulation_key)
        self.channel, _ = attested_channel(
            self.platform.config.endpoints.frontend_api, "frontend", policy=policy
        )
        self.stub = pb_grpc.TeaclaveFrontendStub(self.channel)
        self.admin = self.platform.admin()
        fo = self.client("fo")
        self.psi = fo.register_function(
            "builtin-ordered-set-intersect",
            "ordered set intersection",
            "builtin",
            public=False,
            arguments=[FunctionArgument("order")],
            inputs=[FunctionInput("input_data1"), FunctionInput("input_data2")],
            outputs=[FunctionOutput("output_result1"), FunctionOutput("output_result2")],
            user_allowlist=["attribute:a"],
        )
        self.in1 = self.input("do_a", PSI0)
        self.in2 = self.input("do_b", PSI1)
        for label in ("admin", "dom_a", "dom_b", "do_c"):
            self.own_inputs[label] = self.input(label, b"1\n")
        self.own_inputs |= {"do_a": self.in1, "do_b": self.in2, "fo": self.in1, "fo2": self.in1}

    def close(self) -> None:
        """Leave the platform idle: cancel what is staged or running, wait for it to end."""
        for task in self.invoked:
            status = self.status(task)
            if status in (TaskStatus.STAGED, TaskStatus.RUNNING):
                self.cancel(task)
        self.wait_invoked_ended()
        self.channel.close()
        self.admin.close()
        for user in self.users.values():
            user.client.close()

    def client(self, label: str) -> FrontendClient:
        return self.users[label].client

    def raw(self, label: str, method: str, request: Any) -> Any:
        """A call outside the matrix (setup, observation) as ``label``."""
        client = self.client(label)
        metadata = (("id", client.user_id), ("token", client.token))
        return getattr(self.stub, method)(request, metadata=metadata, timeout=30)

    # --- raw calls -------------------------------------------------------------

    def call(self, case: str, api: str, label: str, method: str, request: Any) -> Call:
        """Call ``method`` as ``label`` once (no retry), recording outcome and time window."""
        user = self.users[label]
        metadata = (("id", user.id), ("token", user.client.token))
        started = time.time_ns() // 1000
        try:
            response = getattr(self.stub, method)(request, metadata=metadata, timeout=30)
            code, details = OK, ""
        except grpc.RpcError as exc:
            response, code, details = None, exc.code(), exc.details() or ""
        ended = time.time_ns() // 1000
        record = Call(case, api, user, code, details, response, started, ended)
        self.calls.append(record)
        return record

    def audit_entries(self, since: int) -> list[pb.QueryAuditLogsResponse]:
        """Every audit entry from ``since`` on (as the platform's admin)."""
        request = pb.QueryAuditLogsRequest(query="", limit=10_000)
        metadata = (("id", self.admin.user_id), ("token", self.admin.token))
        logs = list(self.stub.QueryAuditLogs(request, metadata=metadata, timeout=30).logs)
        if len(logs) == 10_000:
            assert logs[-1].microsecond < since, "more audit entries than one query returns"
        return [entry for entry in logs if entry.microsecond >= since]

    # --- files -----------------------------------------------------------------

    def input(self, label: str, plaintext: bytes) -> str:
        key, iv = secrets.token_bytes(16), secrets.token_bytes(12)
        data, cmac = encrypt(key, iv, plaintext)
        path = self.platform.files / f"mx-in-{secrets.token_hex(6)}.enc"
        path.write_bytes(data)
        return self.client(label).register_input_file(path.as_uri(), "aes-gcm-128", key, iv, cmac)

    def output(self, label: str) -> str:
        path = self.platform.files / f"mx-out-{secrets.token_hex(6)}.enc"
        key, iv = secrets.token_bytes(16), secrets.token_bytes(12)
        return self.client(label).register_output_file(path.as_uri(), "aes-gcm-128", key, iv)

    def file(self, target: str, fresh: bool) -> str:
        """The id of a file target (``fresh``: a new one like it, for a call changing it)."""
        if target == "out_a" and fresh:
            return self.output("do_a")
        if target not in self.files:
            if target == "in_a":
                self.files[target] = self.in1
            elif target == "out_a":
                self.files[target] = self.output("do_a")
            elif target == "fusion":
                owners = [self.users["do_a"].id, self.users["do_b"].id]
                self.files[target] = self.client("do_a").register_fusion_output(owners)
            elif target == "out_written":
                self.files[target] = self.task("Finished").out1
        return self.files[target]

    def observe_file(self, target: str) -> Any:
        client = self.client("do_a")
        if target == "in_a":
            return client.get_input_file(self.file(target, False))
        return client.get_output_file(self.file(target, False))

    # --- functions -------------------------------------------------------------

    def function_request(self, target: str) -> dict[str, Any]:
        """The fields of the function a target is (registration and updates send them)."""
        allowlist = []
        if not FUNCTIONS[target].public:
            allowlist = ["attribute:a", f"user:{self.users['do_b'].id}"]
        return dict(ECHO, public=FUNCTIONS[target].public, user_allowlist=allowlist)

    def stored_allowlist(self, target: str) -> list[str]:
        """A function target's allow-list as stored (disabling clears it)."""
        if FUNCTIONS[target].disabled:
            return []
        return list(self.function_request(target)["user_allowlist"])

    def function(self, target: str, fresh: bool) -> str:
        if fresh or target not in self.functions:
            request = pb.RegisterFunctionRequest(**self.function_request(target))
            function_id = self.raw("fo", "RegisterFunction", request).function_id
            if FUNCTIONS[target].disabled:
                self.client("fo").disable_function(function_id)
            if fresh:
                return str(function_id)
            self.functions[target] = function_id
        return self.functions[target]

    def observe_function(self, target: str) -> Any:
        request = pb.GetFunctionRequest(function_id=self.function(target, False))
        return self.raw("fo", "GetFunction", request)

    # --- tasks -----------------------------------------------------------------

    def status(self, task_id: str) -> TaskStatus:
        return self.client(CREATOR).get_task(task_id).status

    def observe_task(self, task_id: str) -> Any:
        return self.raw(CREATOR, "GetTask", pb.GetTaskRequest(task_id=task_id))

    def new_task(self, state: str) -> PreparedTask:
        """A task brought to Created, DataAssigned or Approved through the API."""
        ids = {label: self.users[label].id for label in CALLERS}
        out1, out2 = self.output("do_a"), self.output("dom_a")
        creator = self.client(CREATOR)
        task_id = creator.create_task(
            self.psi,
            {"order": "ascending"},
            "builtin",
            [OwnerList("input_data1", [ids["do_a"]]), OwnerList("input_data2", [ids["do_b"]])],
            [
                OwnerList("output_result1", [ids["do_a"]]),
                OwnerList("output_result2", [ids["dom_a"]]),
            ],
        )
        task = PreparedTask(task_id, out1, out2)
        if state == "Created":
            return task
        creator.assign_data_to_task(
            task_id, [DataMap("input_data1", self.in1)], [DataMap("output_result1", out1)]
        )
        self.client("do_b").assign_data_to_task(task_id, [DataMap("input_data2", self.in2)], [])
        self.client("dom_a").assign_data_to_task(task_id, [], [DataMap("output_result2", out2)])
        for label in sorted(APPROVED_BY[state] if state in BEFORE_STAGING else PARTICIPANTS):
            self.client(label).approve_task(task_id)
        expected = TaskStatus.DATA_ASSIGNED if state == "DataAssigned" else TaskStatus.APPROVED
        assert self.status(task_id) is expected
        return task

    def invoke(self, task: PreparedTask) -> None:
        self.invoked.append(task.id)
        self.client(CREATOR).invoke_task(task.id)

    def wait_status(self, task_id: str, status: TaskStatus, timeout: float = 30.0) -> None:
        wait_for(lambda: self.status(task_id) is status, timeout, f"task {status.name}")

    def wait_invoked_ended(self) -> None:
        ended = (TaskStatus.FINISHED, TaskStatus.CANCELED, TaskStatus.FAILED)
        for task in self.invoked:
            wait_for(lambda t=task: self.status(t) in ended, 30, f"{task} to end")

    def free_executor(self) -> None:
        """Cancel the held Running and the shared Staged task; wait for every task to end."""
        for state in ("Staged", "Running"):
            task = self.tasks.pop(state, None)
            if task is not None and self.status(task.id) in (
                TaskStatus.STAGED,
                TaskStatus.RUNNING,
            ):
                self.cancel(task.id)
        self.wait_invoked_ended()

    def cancel(self, task_id: str) -> None:
        """Cancel a staged or running task, unless a matrix case already asked to."""
        try:
            self.client(CREATOR).cancel_task(task_id)
        except TeaclaveException as exc:  # the scheduler has not acted on that request yet
            if "task has already been canceled" not in str(exc):
                raise

    def task(self, state: str, fresh: bool = False) -> PreparedTask:
        """A task in ``state``; ``fresh``: one for this case alone (it may change it)."""
        if state == "Running":
            return self._running(fresh)
        if state == "Staged":
            self._running(fresh=False)  # the one executor is busy: tasks stay Staged
        if not fresh and state in self.tasks:
            return self.tasks[state]
        task = self._prepare(state)
        if not fresh:
            task.shared = True
            self.tasks[state] = task
        return task

    def _prepare(self, state: str) -> PreparedTask:
        if state in BEFORE_STAGING:
            return self.new_task(state)
        if state == "Canceled":
            task = self.new_task("Created")
            self.client(CREATOR).cancel_task(task.id)
            assert self.status(task.id) is TaskStatus.CANCELED
            return task
        if state == "Staged":
            task = self.new_task("Approved")
            self.invoke(task)
            assert self.status(task.id) is TaskStatus.STAGED
            return task
        self.free_executor()
        task = self.new_task("Approved")
        if state == "Finished":
            self.invoke(task)
            self.wait_status(task.id, TaskStatus.FINISHED)
            return task
        assert state == "Failed", state
        executor = self.platform.supervisor.pid("execution")
        assert executor is not None
        # kill -9 the executor mid-task (its process frozen): the scheduler fails the task.
        held = self.platform.hold_next_task()
        self.invoke(task)
        held()
        os.kill(executor, signal.SIGKILL)
        self.wait_status(task.id, TaskStatus.FAILED)
        wait_for(lambda: self.platform.supervisor.pid("execution") not in (None, executor))
        return task

    def _running(self, fresh: bool) -> PreparedTask:
        """The task held Running (its process stopped); a new one once a case canceled it."""
        if "Running" not in self.tasks or self.running_consumed:
            self.free_executor()
            task = self.new_task("Approved")
            held = self.platform.hold_next_task()
            self.invoke(task)
            held()
            self.wait_status(task.id, TaskStatus.RUNNING)
            task.shared = True
            self.tasks["Running"] = task
            self.running_consumed = False
        task = self.tasks["Running"]
        if fresh:
            self.running_consumed = True
            return PreparedTask(task.id, task.out1, task.out2)
        return task


def poll(predicate: Callable[[], bool], timeout: float) -> bool:
    """Whether ``predicate`` became true before ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def world_of(platform: Platform) -> Iterator[World]:
    """A started world, closed afterwards."""
    world = World(platform)
    world.start()
    try:
        yield world
    finally:
        world.close()
