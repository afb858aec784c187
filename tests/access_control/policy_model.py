"""A z3 model of the access rules, built from :data:`teaclave.core.access.RULES`.

States are small: ``USERS`` users (sets of users are bit-vectors), ``ATTRIBUTES``
role attributes (index 0: none), ``FILES`` files per AssignData call. Each
predicate name of the table has a z3 meaning here (:data:`PREDICATES`); a rule
becomes a formula by the table's own structure (roles, then conditions, then
conditions on every file), so changing the table changes the model.
:class:`Concrete` states run through both the model and :func:`decide`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import z3

from teaclave.core.access import RULES, Facts, FileFacts, FunctionFacts, Rule, Subject, TaskFacts
from teaclave.core.roles import Role, RoleKind

USERS = ("alice", "bob", "x", "carol")
"""User ids; ``x`` is also an attribute's name (the allow-list namespaces must not mix)."""
ATTRIBUTES = ("", "x", "y")
FILES = 2
KINDS = tuple(RoleKind)
N = len(USERS)
WITH_ATTRIBUTE = (RoleKind.DATA_OWNER, RoleKind.DATA_OWNER_MANAGER)


def member(index: z3.ArithRef, bits: z3.BitVecRef) -> z3.BoolRef:
    """``index`` is in the set ``bits``."""
    size = bits.size()
    return z3.Or([z3.And(index == k, z3.Extract(k, k, bits) == 1) for k in range(size)])


def singleton(index: z3.ArithRef) -> z3.BitVecRef:
    """The set ``{index}`` of users."""
    return z3.Sum(  # type: ignore[no-any-return]
        [z3.If(index == k, z3.BitVecVal(1 << k, N), z3.BitVecVal(0, N)) for k in range(N)]
    )


@dataclass(frozen=True)
class File:
    """A file's facts: owners, existence, declared owners of its task slot (if any)."""

    owners: z3.BitVecRef
    exists: z3.BoolRef
    has_slot: z3.BoolRef
    declared: z3.BitVecRef
    present: z3.BoolRef = field(default_factory=lambda: z3.BoolVal(True))


@dataclass(frozen=True)
class State:
    """One call: the subject and every fact a rule may look at."""

    user: z3.ArithRef
    kind: z3.ArithRef
    attribute: z3.ArithRef
    file: File
    files: tuple[File, ...]
    function_owner: z3.ArithRef
    public: z3.BoolRef
    listed_users: z3.BitVecRef
    listed_attributes: z3.BitVecRef
    disabled: z3.BoolRef
    creator: z3.ArithRef
    participants: z3.BitVecRef
    listed_user: z3.ArithRef
    new_owners: z3.BitVecRef

    def is_kind(self, kind: RoleKind) -> z3.BoolRef:
        return self.kind == KINDS.index(kind)

    def well_formed(self) -> z3.BoolRef:
        """Ranges, and only DataOwner(Manager)s carry an attribute (as Role.parse makes them)."""
        in_range = [
            z3.And(v >= 0, v < N)
            for v in (self.user, self.function_owner, self.creator, self.listed_user)
        ]
        return z3.And(
            *in_range,
            self.kind >= 0,
            self.kind < len(KINDS),
            self.attribute >= 0,
            self.attribute < len(ATTRIBUTES),
            z3.Implies(
                z3.Not(z3.Or([self.is_kind(k) for k in WITH_ATTRIBUTE])), self.attribute == 0
            ),
            z3.Extract(0, 0, self.listed_attributes) == 0,  # no entry names "no attribute"
        )


def _file(prefix: str) -> File:
    return File(
        z3.BitVec(f"{prefix}_owners", N),
        z3.Bool(f"{prefix}_exists"),
        z3.Bool(f"{prefix}_has_slot"),
        z3.BitVec(f"{prefix}_declared", N),
        z3.Bool(f"{prefix}_present"),
    )


def symbolic(prefix: str = "s") -> State:
    """A state with every field free."""
    return State(
        user=z3.Int(f"{prefix}_user"),
        kind=z3.Int(f"{prefix}_kind"),
        attribute=z3.Int(f"{prefix}_attribute"),
        file=_file(f"{prefix}_file"),
        files=tuple(_file(f"{prefix}_files{i}") for i in range(FILES)),
        function_owner=z3.Int(f"{prefix}_function_owner"),
        public=z3.Bool(f"{prefix}_public"),
        listed_users=z3.BitVec(f"{prefix}_listed_users", N),
        listed_attributes=z3.BitVec(f"{prefix}_listed_attributes", len(ATTRIBUTES)),
        disabled=z3.Bool(f"{prefix}_disabled"),
        creator=z3.Int(f"{prefix}_creator"),
        participants=z3.BitVec(f"{prefix}_participants", N),
        listed_user=z3.Int(f"{prefix}_listed_user"),
        new_owners=z3.BitVec(f"{prefix}_new_owners", N),
    )


def _at_least_two(bits: z3.BitVecRef) -> z3.BoolRef:
    return z3.And(bits != 0, bits & (bits - 1) != 0)


PREDICATES: dict[str, Callable[[State, File], z3.BoolRef]] = {
    "is_admin": lambda s, f: s.is_kind(RoleKind.PLATFORM_ADMIN),
    "file_exists": lambda s, f: f.exists,
    "owns_file": lambda s, f: member(s.user, f.owners),
    "sole_owner_of_file": lambda s, f: f.owners == singleton(s.user),
    "task_has_slot": lambda s, f: f.has_slot,
    "file_owners_match_slot": lambda s, f: z3.Implies(f.has_slot, f.owners == f.declared),
    "at_least_two_new_owners": lambda s, f: _at_least_two(s.new_owners),
    "among_new_owners": lambda s, f: member(s.user, s.new_owners),
    "owns_function": lambda s, f: s.function_owner == s.user,
    "function_public": lambda s, f: s.public,
    "allow_listed": lambda s, f: z3.Or(
        member(s.user, s.listed_users),
        z3.And(s.attribute != 0, member(s.attribute, s.listed_attributes)),
    ),
    "function_enabled": lambda s, f: z3.Not(s.disabled),
    "lists_own_functions": lambda s, f: s.listed_user == s.user,
    "is_participant": lambda s, f: member(s.user, s.participants),
    "is_creator": lambda s, f: s.creator == s.user,
}
"""The meaning of every predicate name of the table (``f``: the file it is applied to)."""


def _any(names: tuple[str, ...], state: State, file: File) -> z3.BoolRef:
    return z3.Or([PREDICATES[name](state, file) for name in names])


def role_allowed(rule: Rule, state: State) -> z3.BoolRef:
    """The role check of a rule for a user's call."""
    if rule.internal:
        return z3.BoolVal(False)
    allowed = [RoleKind.PLATFORM_ADMIN, *rule.roles]
    return z3.Or([state.is_kind(kind) for kind in allowed])


def allowed(api: str, state: State, rules: Mapping[str, Rule] = RULES) -> z3.BoolRef:
    """The rule for ``api`` as a formula: the call is allowed in ``state``."""
    rule = rules.get(api)
    if rule is None:
        return z3.BoolVal(False)
    conditions = [_any(c.any_of, state, state.file) for c in rule.conditions]
    per_file = [
        z3.Implies(file.present, _any(c.any_of, state, file))
        for file in state.files
        for c in rule.each_file
    ]
    return z3.And(role_allowed(rule, state), *conditions, *per_file)


def redacted(api: str, state: State, rules: Mapping[str, Rule] = RULES) -> z3.BoolRef:
    """An allowed call sees a redacted record."""
    rule = rules[api]
    if not rule.full_view:
        return z3.BoolVal(False)
    return z3.Not(_any(rule.full_view, state, state.file))


# --- concrete states: the same state for z3 and for decide ---------------------------


@dataclass(frozen=True)
class ConcreteFile:
    owners: int
    exists: bool = True
    declared: int | None = None
    present: bool = True


@dataclass(frozen=True)
class Concrete:
    """A state in plain values (bit masks for sets); ``entries`` is the allow-list as sent."""

    user: int
    kind: int
    attribute: int
    file: ConcreteFile
    files: tuple[ConcreteFile, ...]
    function_owner: int
    public: bool
    listed_users: int
    listed_attributes: int
    disabled: bool
    creator: int
    participants: int
    listed_user: int
    new_owners: int
    user_entry_style: tuple[bool, ...] = (False,) * N
    """Per user: allow-list it as ``user:<id>`` (True) or as a plain entry."""

    def entries(self) -> tuple[str, ...]:
        users = [
            ("user:" if self.user_entry_style[i] else "") + USERS[i]
            for i in range(N)
            if self.listed_users >> i & 1
        ]
        attributes = [
            "attribute:" + ATTRIBUTES[j]
            for j in range(len(ATTRIBUTES))
            if self.listed_attributes >> j & 1
        ]
        return (*users, *attributes)

    def subject(self) -> Subject:
        kind = KINDS[self.kind]
        attribute = ATTRIBUTES[self.attribute] if kind in WITH_ATTRIBUTE else ""
        return Subject(USERS[self.user], Role(kind, attribute))

    def facts(self) -> Facts:
        return Facts(
            file=_file_facts(self.file),
            files=tuple(_file_facts(f) for f in self.files if f.present),
            function=FunctionFacts(
                USERS[self.function_owner], self.public, self.entries(), self.disabled
            ),
            task=TaskFacts(USERS[self.creator], users_of(self.participants)),
            listed_user=USERS[self.listed_user],
            new_owners=users_of(self.new_owners),
        )

    def state(self) -> State:
        """The same state as z3 constants."""
        return State(
            user=z3.IntVal(self.user),
            kind=z3.IntVal(self.kind),
            attribute=z3.IntVal(self.attribute),
            file=_file_constants(self.file),
            files=tuple(_file_constants(f) for f in self.files),
            function_owner=z3.IntVal(self.function_owner),
            public=z3.BoolVal(self.public),
            listed_users=z3.BitVecVal(self.listed_users, N),
            listed_attributes=z3.BitVecVal(self.listed_attributes, len(ATTRIBUTES)),
            disabled=z3.BoolVal(self.disabled),
            creator=z3.IntVal(self.creator),
            participants=z3.BitVecVal(self.participants, N),
            listed_user=z3.IntVal(self.listed_user),
            new_owners=z3.BitVecVal(self.new_owners, N),
        )


def users_of(mask: int) -> frozenset[str]:
    """The user ids of a bit mask."""
    return frozenset(USERS[i] for i in range(N) if mask >> i & 1)


def _file_facts(file: ConcreteFile) -> FileFacts:
    declared = None if file.declared is None else users_of(file.declared)
    return FileFacts(users_of(file.owners), file.exists, "input 'a'", declared)


def _file_constants(file: ConcreteFile) -> File:
    return File(
        z3.BitVecVal(file.owners, N),
        z3.BoolVal(file.exists),
        z3.BoolVal(file.declared is not None),
        z3.BitVecVal(file.declared or 0, N),
        z3.BoolVal(file.present),
    )


def evaluate(formula: z3.BoolRef) -> bool:
    """The truth value of a formula over constants."""
    value = z3.simplify(formula)
    if not (z3.is_true(value) or z3.is_false(value)):
        raise ValueError(f"not a constant formula: {value}")
    return z3.is_true(value)


def from_model(model: z3.ModelRef, state: State) -> Concrete:
    """The concrete state a solver's model assigns to a symbolic ``state``."""

    def num(expr: z3.ExprRef) -> int:
        return int(model.eval(expr, model_completion=True).as_long())  # type: ignore[attr-defined]

    def flag(expr: z3.ExprRef) -> bool:
        return z3.is_true(model.eval(expr, model_completion=True))

    def file(f: File) -> ConcreteFile:
        return ConcreteFile(
            num(f.owners),
            flag(f.exists),
            num(f.declared) if flag(f.has_slot) else None,
            flag(f.present),
        )

    return Concrete(
        user=num(state.user),
        kind=num(state.kind),
        attribute=num(state.attribute),
        file=file(state.file),
        files=tuple(file(f) for f in state.files),
        function_owner=num(state.function_owner),
        public=flag(state.public),
        listed_users=num(state.listed_users),
        listed_attributes=num(state.listed_attributes),
        disabled=flag(state.disabled),
        creator=num(state.creator),
        participants=num(state.participants),
        listed_user=num(state.listed_user),
        new_owners=num(state.new_owners),
    )
