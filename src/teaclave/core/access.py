"""Every access rule of the platform in one table, and the engine that applies it.

:data:`RULES` holds, for each API (snake_case RPC name), a :class:`Rule`: the
role kinds that may call it (reference §4.1-4.2; PlatformAdmin may call every
API) and the conditions the resource must meet (§4.3, with the §11.2 gaps
closed), as named predicates over :class:`Facts`, a snapshot of the resource.
:func:`decide` applies a rule; an API without a rule is denied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from teaclave.core.errors import Status, TeaclaveError, permission_denied
from teaclave.core.model import Function, Task
from teaclave.core.roles import Role, RoleKind

# --- subjects and facts --------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """Who calls: the authenticated user id and role."""

    user_id: str
    role: Role


@dataclass(frozen=True)
class FileFacts:
    """A file a call touches; for AssignData also the task slot it goes to."""

    owners: frozenset[str]
    exists: bool = True
    slot: str = ""
    """``input 'name'`` / ``output 'name'`` when assigned to a task."""
    declared_owners: frozenset[str] | None = None
    """The owners the task declares for the slot (None: the task has no such slot)."""


@dataclass(frozen=True)
class FunctionFacts:
    """What the rules look at in a function."""

    owner: str
    public: bool
    allowlist: tuple[str, ...] = ()
    disabled: bool = False

    @classmethod
    def of(cls, function: Function) -> FunctionFacts:
        """The facts of a function record."""
        return cls(function.owner, function.public, function.user_allowlist, function.disabled)


@dataclass(frozen=True)
class TaskFacts:
    """What the rules look at in a task."""

    creator: str
    participants: frozenset[str]

    @classmethod
    def of(cls, task: Task) -> TaskFacts:
        """The facts of a task record."""
        return cls(task.creator, task.participants)


@dataclass(frozen=True)
class Facts:
    """The snapshot of the resource a call is about (fields the API has no use for stay unset)."""

    file: FileFacts | None = None
    files: tuple[FileFacts, ...] = ()
    """Files assigned to a task: the rule's ``each_file`` conditions hold for each."""
    function: FunctionFacts | None = None
    task: TaskFacts | None = None
    listed_user: str | None = None
    """ListFunctions: whose lists are asked for."""
    new_owners: frozenset[str] = field(default_factory=frozenset)
    """RegisterFusionOutput: the owners requested."""


# --- the allow-list ------------------------------------------------------------

USER_PREFIX = "user:"
ATTRIBUTE_PREFIX = "attribute:"


def allow_listed_user(entry: str) -> str | None:
    """The user id an allow-list entry names: ``user:<id>`` or a plain entry; else None."""
    if entry.startswith(ATTRIBUTE_PREFIX):
        return None
    return entry.removeprefix(USER_PREFIX)


def allow_listed_attribute(entry: str) -> str | None:
    """The role attribute an ``attribute:<attr>`` entry names (None for other entries)."""
    if entry.startswith(ATTRIBUTE_PREFIX):
        return entry.removeprefix(ATTRIBUTE_PREFIX) or None
    return None


def allow_listed_users(allowlist: Iterable[str]) -> list[str]:
    """The user ids an allow-list names, in order, without repeats."""
    users = (allow_listed_user(entry) for entry in allowlist)
    return list(dict.fromkeys(user for user in users if user is not None))


def is_allow_listed(allowlist: Iterable[str], subject: Subject) -> bool:
    """The subject's user id, or its DataOwner(Manager) attribute, is named by an entry."""
    for entry in allowlist:
        if allow_listed_user(entry) == subject.user_id:
            return True
        attribute = allow_listed_attribute(entry)
        if attribute is not None and attribute == subject.role.attribute:
            return True
    return False


# --- predicates ----------------------------------------------------------------

Predicate = Callable[[Subject, Facts], bool]


def _file(facts: Facts) -> FileFacts:
    if facts.file is None:
        raise ValueError("the rule needs a file")
    return facts.file


def _function(facts: Facts) -> FunctionFacts:
    if facts.function is None:
        raise ValueError("the rule needs a function")
    return facts.function


def _task(facts: Facts) -> TaskFacts:
    if facts.task is None:
        raise ValueError("the rule needs a task")
    return facts.task


PREDICATES: dict[str, Predicate] = {
    "is_admin": lambda s, f: s.role.is_admin,
    "file_exists": lambda s, f: _file(f).exists,
    "owns_file": lambda s, f: s.user_id in _file(f).owners,
    "sole_owner_of_file": lambda s, f: _file(f).owners == {s.user_id},
    "task_has_slot": lambda s, f: _file(f).declared_owners is not None,
    "file_owners_match_slot": lambda s, f: _file(f).declared_owners in (None, _file(f).owners),
    "at_least_two_new_owners": lambda s, f: len(f.new_owners) >= 2,
    "among_new_owners": lambda s, f: s.user_id in f.new_owners,
    "owns_function": lambda s, f: _function(f).owner == s.user_id,
    "function_public": lambda s, f: _function(f).public,
    "allow_listed": lambda s, f: is_allow_listed(_function(f).allowlist, s),
    "function_enabled": lambda s, f: not _function(f).disabled,
    "lists_own_functions": lambda s, f: f.listed_user == s.user_id,
    "is_participant": lambda s, f: s.user_id in _task(f).participants,
    "is_creator": lambda s, f: _task(f).creator == s.user_id,
}
"""Every condition a rule may name, by name. Each checks one thing (a file for a slot the
task lacks passes ``file_owners_match_slot``; ``task_has_slot`` refuses it), so dropping
any one condition from a rule changes what it allows (the proofs check this)."""


# --- rules ---------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """Holds when any of the named predicates holds; else the call fails with the error."""

    any_of: tuple[str, ...]
    message: str
    """The error message (``{slot}`` is replaced by the file's task slot)."""
    status: Status = Status.PERMISSION_DENIED


@dataclass(frozen=True)
class Rule:
    """Who may call an API and what must hold of the resource."""

    roles: frozenset[RoleKind]
    """The role kinds allowed besides PlatformAdmin, who may call every API."""
    conditions: tuple[Condition, ...] = ()
    each_file: tuple[Condition, ...] = ()
    """Conditions on every file in ``Facts.files``."""
    full_view: tuple[str, ...] = ()
    """If set, a caller meeting none of these predicates sees a redacted record."""
    role_message: str = "permission denied"
    internal: bool = False
    """Called by the frontend, not on behalf of a user (no subject, no conditions)."""


@dataclass(frozen=True)
class Decision:
    """The answer for one call: allowed (possibly with a redacted view) or why not."""

    allowed: bool
    reason: str = ""
    status: Status = Status.PERMISSION_DENIED
    redacted: bool = False

    def enforce(self) -> None:
        """Raise the denial as a :class:`TeaclaveError` (nothing if allowed)."""
        if not self.allowed:
            raise TeaclaveError(self.status, self.reason)


FUNCTION_OWNER = frozenset({RoleKind.FUNCTION_OWNER})
DATA_OWNERS = frozenset({RoleKind.DATA_OWNER_MANAGER, RoleKind.DATA_OWNER})
ADMIN_ONLY: frozenset[RoleKind] = frozenset()

PRIVATE = "permission denied: function is private and not shared with you"
DISABLED = "permission denied: function is disabled"
NOT_FUNCTION_OWNER = "permission denied: not the function's owner"
NOT_PARTICIPANT = "permission denied: not a participant of the task"

_MAY_USE_FUNCTION = ("is_admin", "function_public", "owns_function", "allow_listed")
_READ_FUNCTION = Rule(
    FUNCTION_OWNER | DATA_OWNERS,
    (Condition(_MAY_USE_FUNCTION, PRIVATE),),
    full_view=("is_admin", "function_public", "owns_function"),
)
_OWN_FILE = Rule(
    DATA_OWNERS, (Condition(("owns_file",), "permission denied: not an owner of the file"),)
)
_UPDATE_FILE = Rule(
    DATA_OWNERS,
    (
        Condition(
            ("sole_owner_of_file",), "permission denied: only a file's sole owner can update it"
        ),
    ),
)
_PARTICIPANT = Rule(
    # A private function's owner is a participant who must approve (§3.5): Teaclave's
    # matrix refused FunctionOwners, so tasks on their private functions never ran.
    FUNCTION_OWNER | DATA_OWNERS,
    (Condition(("is_participant",), NOT_PARTICIPANT),),
)

RULES: dict[str, Rule] = {
    "register_input_file": Rule(DATA_OWNERS),
    "register_output_file": Rule(DATA_OWNERS),
    "update_input_file": _UPDATE_FILE,
    "update_output_file": _UPDATE_FILE,
    "register_fusion_output": Rule(
        DATA_OWNERS,
        (
            Condition(
                ("at_least_two_new_owners",),
                "permission denied: a fusion output needs at least two owners",
            ),
            Condition(
                ("among_new_owners",),
                "permission denied: caller must be an owner of the fusion output",
            ),
        ),
    ),
    "register_input_from_output": Rule(
        DATA_OWNERS, (Condition(("owns_file",), "permission denied: not an owner of the output"),)
    ),
    "get_output_file": _OWN_FILE,
    "get_input_file": _OWN_FILE,
    "register_function": Rule(FUNCTION_OWNER),
    "get_function": _READ_FUNCTION,
    "get_function_usage_stats": Rule(
        FUNCTION_OWNER | DATA_OWNERS, (Condition(_MAY_USE_FUNCTION, PRIVATE),)
    ),
    "update_function": Rule(
        FUNCTION_OWNER,
        (
            Condition(("owns_function",), NOT_FUNCTION_OWNER),
            Condition(("function_enabled",), DISABLED),
        ),
    ),
    "list_functions": Rule(
        FUNCTION_OWNER | DATA_OWNERS,
        (
            Condition(
                ("is_admin", "lists_own_functions"),
                "permission denied: can only list your own functions",
            ),
        ),
    ),
    "delete_function": Rule(FUNCTION_OWNER, (Condition(("owns_function",), NOT_FUNCTION_OWNER),)),
    "disable_function": Rule(
        FUNCTION_OWNER, (Condition(("is_admin", "owns_function"), NOT_FUNCTION_OWNER),)
    ),
    "create_task": Rule(
        DATA_OWNERS,
        (Condition(_MAY_USE_FUNCTION, PRIVATE), Condition(("function_enabled",), DISABLED)),
    ),
    "get_task": _PARTICIPANT,
    "wait_task": _PARTICIPANT,  # our extension: GetTask once the task has ended
    "assign_data": Rule(
        DATA_OWNERS,
        (Condition(("is_participant",), NOT_PARTICIPANT),),
        each_file=(
            Condition(("file_exists",), "invalid data id", Status.INVALID_ARGUMENT),
            Condition(("owns_file",), "permission denied: you do not own the file for {slot}"),
            Condition(("task_has_slot",), "permission denied: task has no {slot}"),
            Condition(
                ("file_owners_match_slot",),
                "permission denied: owners of the file differ from those of {slot}",
            ),
        ),
    ),
    "approve_task": _PARTICIPANT,
    "revoke_task_approval": _PARTICIPANT,
    "invoke_task": Rule(
        DATA_OWNERS,
        (Condition(("is_creator",), "permission denied: only the task's creator can invoke it"),),
    ),
    "cancel_task": Rule(
        DATA_OWNERS,
        (
            Condition(
                ("is_admin", "is_creator"),
                "permission denied: only the task's creator can cancel it",
            ),
        ),
    ),
    # Everyone may query; management answers non-admins only with entries about them.
    "query_audit_logs": Rule(FUNCTION_OWNER | DATA_OWNERS),
    "save_logs": Rule(ADMIN_ONLY, internal=True),
}
"""API name → its rule. PlatformAdmin passes every role check, and a condition only if named."""


# --- the engine ----------------------------------------------------------------


def authorize_api(role: Role, api: str) -> bool:
    """The role check alone (the access-control service): admins may call any API, even unknown."""
    if role.is_admin:
        return True
    rule = RULES.get(api)
    return rule is not None and not rule.internal and role.kind in rule.roles


def _holds(condition: Condition, subject: Subject, facts: Facts) -> bool:
    return any(PREDICATES[name](subject, facts) for name in condition.any_of)


def _denied(condition: Condition, facts: Facts) -> Decision:
    slot = facts.file.slot if facts.file is not None else ""
    return Decision(False, condition.message.format(slot=slot), condition.status)


def decide(api: str, subject: Subject | None, facts: Facts) -> Decision:
    """Whether ``subject`` may call ``api`` on the resource described by ``facts``.

    Order: the role, then each condition in the rule's order, then each
    condition on each assigned file; the first that fails is the answer.
    """
    rule = RULES.get(api)
    if rule is None:
        return Decision(False, f"permission denied: no rule for {api}")
    if rule.internal:
        return Decision(subject is None, "" if subject is None else "permission denied")
    if subject is None or not authorize_api(subject.role, api):
        return Decision(False, rule.role_message)
    for condition in rule.conditions:
        if not _holds(condition, subject, facts):
            return _denied(condition, facts)
    for file in facts.files:
        one = replace(facts, file=file)
        for condition in rule.each_file:
            if not _holds(condition, subject, one):
                return _denied(condition, one)
    redacted = bool(rule.full_view) and not any(
        PREDICATES[name](subject, facts) for name in rule.full_view
    )
    return Decision(True, redacted=redacted)


def check_role(api: str, subject: Subject) -> None:
    """PERMISSION_DENIED unless the subject's role may call ``api`` (before reading anything)."""
    if not authorize_api(subject.role, api):
        rule = RULES.get(api)
        raise permission_denied(rule.role_message if rule else "permission denied")
