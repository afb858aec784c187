"""Proofs (z3) about the access rules, over the model built from the rule table.

Each proof asks z3 for a well-formed state that violates the property; unsat
means none exists for any state of the model's size. A weakened table (one
condition dropped, or one role added) must yield a counterexample, which is
replayed through the real :func:`decide`. Hypothesis checks that the running
engine and the model agree on random states.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_model import (
    ATTRIBUTES,
    FILES,
    KINDS,
    USERS,
    WITH_ATTRIBUTE,
    Concrete,
    ConcreteFile,
    File,
    N,
    State,
    allowed,
    evaluate,
    from_model,
    member,
    redacted,
    singleton,
    symbolic,
    users_of,
)

from teaclave.core import tasks
from teaclave.core.access import RULES, Rule, decide
from teaclave.core.errors import TeaclaveError
from teaclave.core.limits import Limits
from teaclave.core.model import (
    CryptoSchema,
    ExecutorType,
    FileCrypto,
    Function,
    FunctionFile,
    FunctionUsage,
    InputFile,
    OutputFile,
    TaskStatus,
)
from teaclave.core.roles import RoleKind
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as fe

USER_APIS = sorted(api for api, rule in RULES.items() if not rule.internal)
FILE_READS = ("get_input_file", "get_output_file", "register_input_from_output")
FILE_UPDATES = ("update_input_file", "update_output_file")


def counterexample(state: State, claim: z3.BoolRef) -> z3.ModelRef | None:
    """A well-formed state where ``claim`` fails, or None if the claim is proved."""
    solver = z3.Solver()
    solver.add(state.well_formed(), z3.Not(claim))
    if solver.check() == z3.unsat:
        return None
    return solver.model()


def prove(state: State, claim: z3.BoolRef) -> None:
    model = counterexample(state, claim)
    assert model is None, f"counterexample: {from_model(model, state)}"


# --- the specification: §4.1-4.3 with the §11.2 gaps closed, written independently ---


def spec(api: str, s: State) -> z3.BoolRef:
    """Who may call what, from the reference (not from the table)."""
    admin = s.is_kind(RoleKind.PLATFORM_ADMIN)
    function_owner = s.is_kind(RoleKind.FUNCTION_OWNER)
    data_owner = z3.Or(s.is_kind(RoleKind.DATA_OWNER), s.is_kind(RoleKind.DATA_OWNER_MANAGER))
    anyone = z3.Or(admin, function_owner, data_owner)
    listed = z3.Or(
        member(s.user, s.listed_users),
        z3.And(s.attribute != 0, member(s.attribute, s.listed_attributes)),
    )
    may_use = z3.Or(admin, s.public, s.function_owner == s.user, listed)
    owns_function = s.function_owner == s.user
    participant = member(s.user, s.participants)
    owns = member(s.user, s.file.owners)

    def assignable(f: File) -> z3.BoolRef:
        return z3.Implies(
            f.present,
            z3.And(f.exists, member(s.user, f.owners), f.has_slot, f.owners == f.declared),
        )

    two_or_more = z3.And(s.new_owners != 0, s.new_owners & (s.new_owners - 1) != 0)
    table = {
        "register_input_file": z3.Or(admin, data_owner),
        "register_output_file": z3.Or(admin, data_owner),
        "update_input_file": z3.And(z3.Or(admin, data_owner), s.file.owners == singleton(s.user)),
        "update_output_file": z3.And(z3.Or(admin, data_owner), s.file.owners == singleton(s.user)),
        "register_fusion_output": z3.And(
            z3.Or(admin, data_owner), two_or_more, member(s.user, s.new_owners)
        ),
        "register_input_from_output": z3.And(z3.Or(admin, data_owner), owns),
        "get_input_file": z3.And(z3.Or(admin, data_owner), owns),
        "get_output_file": z3.And(z3.Or(admin, data_owner), owns),
        "register_function": z3.Or(admin, function_owner),
        "get_function": z3.And(anyone, may_use),
        "get_function_usage_stats": z3.And(anyone, may_use),
        "update_function": z3.And(z3.Or(admin, function_owner), owns_function, z3.Not(s.disabled)),
        "list_functions": z3.And(anyone, z3.Or(admin, s.listed_user == s.user)),
        "delete_function": z3.And(z3.Or(admin, function_owner), owns_function),
        "disable_function": z3.And(z3.Or(admin, function_owner), z3.Or(admin, owns_function)),
        "create_task": z3.And(z3.Or(admin, data_owner), may_use, z3.Not(s.disabled)),
        "get_task": z3.And(anyone, participant),
        "wait_task": z3.And(anyone, participant),  # our extension: GetTask, once ended
        "assign_data": z3.And(
            z3.Or(admin, data_owner), participant, *[assignable(f) for f in s.files]
        ),
        "approve_task": z3.And(anyone, participant),
        "revoke_task_approval": z3.And(anyone, participant),
        "invoke_task": z3.And(z3.Or(admin, data_owner), s.creator == s.user),
        "cancel_task": z3.And(z3.Or(admin, data_owner), z3.Or(admin, s.creator == s.user)),
        "query_audit_logs": anyone,
    }
    return table[api]


# --- the table is the specification ---------------------------------------------------


def test_spec_covers_every_user_api() -> None:
    s = symbolic()
    for api in USER_APIS:
        spec(api, s)


@pytest.mark.parametrize("api", USER_APIS)
def test_allowed_exactly_when_the_spec_allows(api: str) -> None:
    """Everything the specification does not allow is denied (and nothing more)."""
    s = symbolic()
    prove(s, allowed(api, s) == spec(api, s))


def test_unknown_apis_and_internal_calls_are_denied_tousers_of() -> None:
    s = symbolic()
    prove(s, z3.Not(allowed("no_such_api", s)))
    prove(s, z3.Not(allowed("save_logs", s)))


def test_allow_listed_readers_see_no_payload() -> None:
    s = symbolic()
    full = z3.Or(s.is_kind(RoleKind.PLATFORM_ADMIN), s.public, s.function_owner == s.user)
    prove(s, z3.Implies(allowed("get_function", s), redacted("get_function", s) == z3.Not(full)))


# --- files ------------------------------------------------------------------------------


@pytest.mark.parametrize("api", FILE_READS + FILE_UPDATES)
def test_no_one_reads_or_updates_a_file_they_do_not_own(api: str) -> None:
    s = symbolic()
    prove(s, z3.Implies(allowed(api, s), member(s.user, s.file.owners)))


@pytest.mark.parametrize("api", FILE_UPDATES)
def test_only_a_sole_owner_updates(api: str) -> None:
    s = symbolic()
    prove(s, z3.Implies(allowed(api, s), s.file.owners == singleton(s.user)))


def test_no_one_assigns_a_file_they_do_not_own() -> None:
    s = symbolic()
    owned = [z3.Implies(f.present, member(s.user, f.owners)) for f in s.files]
    prove(s, z3.Implies(allowed("assign_data", s), z3.And(owned)))


@pytest.mark.parametrize("api", [*FILE_READS, *FILE_UPDATES, "assign_data"])
def test_platform_admin_has_no_bypass_on_files(api: str) -> None:
    s = symbolic()
    files = [s.file] if api != "assign_data" else list(s.files)
    owned = [z3.Implies(f.present, member(s.user, f.owners)) for f in files]
    admin = s.is_kind(RoleKind.PLATFORM_ADMIN)
    prove(s, z3.Implies(z3.And(admin, allowed(api, s)), z3.And(owned)))


def _fields(descriptor: object, seen: set[str]) -> set[str]:
    name = descriptor.full_name  # type: ignore[attr-defined]
    if name in seen:
        return set()
    seen.add(name)
    found = {name}
    for field in descriptor.fields:  # type: ignore[attr-defined]
        if field.message_type is not None:
            found |= _fields(field.message_type, seen)
    return found


def test_no_response_carries_a_file_key() -> None:
    """File keys go to executors only: no frontend response holds a FileCryptoInfo."""
    service = fe.DESCRIPTOR.services_by_name["TeaclaveFrontend"]
    crypto = common.FileCryptoInfo.DESCRIPTOR.full_name
    for method in service.methods:
        assert crypto not in _fields(method.output_type, set()), method.name


# --- participants -----------------------------------------------------------------------


@pytest.mark.parametrize("api", USER_APIS)
def test_adding_participants_never_gives_a_non_owner_access(api: str) -> None:
    """More participants open only the task itself; files still need their owners."""
    s = symbolic()
    more = z3.BitVec("more_participants", N)
    s2 = dataclasses.replace(s, participants=s.participants | more)
    gained = z3.And(allowed(api, s2), z3.Not(allowed(api, s)))
    if api in ("get_task", "wait_task", "approve_task", "revoke_task_approval"):
        claim = z3.Implies(gained, member(s.user, s2.participants))
    elif api == "assign_data":
        owned = [z3.Implies(f.present, member(s.user, f.owners)) for f in s.files]
        claim = z3.Implies(gained, z3.And(owned))
    else:
        claim = z3.Not(gained)
    prove(s, claim)


# --- staging ----------------------------------------------------------------------------


def _popcount_one(bits: z3.BitVecRef) -> z3.BoolRef:
    return z3.And(bits != 0, bits & (bits - 1) == 0)


def _call(prefix: str, creator: z3.ArithRef, participants: z3.BitVecRef) -> State:
    s = symbolic(prefix)
    return dataclasses.replace(s, creator=creator, participants=participants)


def test_staged_only_if_every_owner_approved() -> None:
    """Invoke succeeds only if every owner of every assigned file, and the owner of a
    private function, approved (the creator invoking counts as the creator's consent)."""
    creator, function_owner = z3.Int("creator"), z3.Int("function_owner")
    public = z3.Bool("public")
    declared = [z3.BitVec(f"declared{i}", N) for i in range(FILES)]
    owners = [z3.BitVec(f"owners{i}", N) for i in range(FILES)]
    approved = z3.BitVec("approved", N)
    # CreateTask (core.tasks.create_task; checked against the code below).
    participants = singleton(creator) | declared[0] | declared[1]
    participants = participants | z3.If(public, z3.BitVecVal(0, N), singleton(function_owner))
    facts: list[z3.BoolRef] = []
    states: list[State] = []
    for i in range(FILES):  # each file assigned by an allowed AssignData
        call = _call(f"assign{i}", creator, participants)
        slot = File(owners[i], z3.BoolVal(True), z3.BoolVal(True), declared[i])
        absent = dataclasses.replace(call.files[1], present=z3.BoolVal(False))
        call = dataclasses.replace(call, files=(slot, absent))
        facts.append(allowed("assign_data", call))
        states.append(call)
    for k in range(N):  # each approval by an allowed ApproveTask
        call = _call(f"approve{k}", creator, participants)
        facts.append(
            z3.Implies(
                member(z3.IntVal(k), approved),
                z3.And(call.user == k, allowed("approve_task", call)),
            )
        )
        states.append(call)
    invoke = _call("invoke", creator, participants)
    states.append(invoke)
    everyone_approved = z3.Or(_popcount_one(participants), participants == approved)
    facts += [allowed("invoke_task", invoke), everyone_approved]
    consented = approved | singleton(invoke.user)
    claim = z3.And(
        *[owners[i] & ~consented == 0 for i in range(FILES)],
        z3.Implies(z3.Not(public), member(function_owner, consented)),
    )
    solver = z3.Solver()
    solver.add(*[s.well_formed() for s in states], *facts, z3.Not(claim))
    for v in (creator, function_owner):
        solver.add(v >= 0, v < N)
    assert solver.check() == z3.unsat


@settings(max_examples=200, deadline=None)
@given(
    creator=st.integers(0, N - 1),
    owner=st.integers(0, N - 1),
    public=st.booleans(),
    declared=st.lists(st.integers(1, (1 << N) - 1), min_size=FILES, max_size=FILES),
)
def test_participants_are_what_the_model_says(
    creator: int, owner: int, public: bool, declared: list[int]
) -> None:
    function = Function(
        "f",
        "builtin-echo",
        "",
        ExecutorType.BUILTIN,
        public,
        b"",
        (),
        tuple(FunctionFile(f"in{i}") for i in range(FILES)),
        (),
        USERS[owner],
    )
    task = tasks.create_task(
        task_uuid="t",
        function=function,
        creator=USERS[creator],
        executor="builtin",
        arguments="{}",
        inputs_ownership=[(f"in{i}", sorted(users_of(d))) for i, d in enumerate(declared)],
        outputs_ownership=[],
        max_limits=Limits(600.0, 3600.0, 8192),
    )
    expected = 1 << creator | declared[0] | declared[1] | (0 if public else 1 << owner)
    assert task.participants == users_of(expected)


# --- approvals, digests and changes -------------------------------------------------------

CREATED, DATA_ASSIGNED, APPROVED, STAGED = range(4)
DIGEST = z3.Function("digest", z3.IntSort(), z3.IntSort())
"""core.tasks.task_digest of the task's content, content numbered by ``version``."""


@dataclass(frozen=True)
class Ghost:
    """A task as core.tasks sees it: ``version`` numbers its content; participant ``k``'s
    recorded approval (``has[k]``) is the digest of the content at ``approved_at[k]``."""

    status: z3.ArithRef
    version: z3.ArithRef
    assigned: z3.BoolRef
    has: tuple[z3.BoolRef, ...]
    approved_at: tuple[z3.ArithRef, ...]

    def current(self, k: int) -> z3.BoolRef:
        """``k`` approved the current digest (what the code compares)."""
        return z3.And(self.has[k], DIGEST(self.approved_at[k]) == DIGEST(self.version))

    def everyone(self, participants: z3.BitVecRef) -> z3.BoolRef:
        """core.tasks.everyone_approved."""
        each = [z3.Implies(member(z3.IntVal(k), participants), self.current(k)) for k in range(N)]
        return z3.Or(_popcount_one(participants), z3.And(each))


def _ghost(prefix: str) -> Ghost:
    return Ghost(
        z3.Int(f"{prefix}_status"),
        z3.Int(f"{prefix}_version"),
        z3.Bool(f"{prefix}_assigned"),
        tuple(z3.Bool(f"{prefix}_has{k}") for k in range(N)),
        tuple(z3.Int(f"{prefix}_at{k}") for k in range(N)),
    )


def _approvals_unchanged(t: Ghost, t2: Ghost, but: int | None = None) -> z3.BoolRef:
    return z3.And(
        [
            z3.And(t2.has[k] == t.has[k], t2.approved_at[k] == t.approved_at[k])
            for k in range(N)
            if k != but
        ]
    )


def _steps(t: Ghost, t2: Ghost, participants: z3.BitVecRef) -> dict[str, z3.BoolRef]:
    """The task operations of core.tasks, by name (``approve<k>``/``revoke<k>``: by user k)."""
    same_content = z3.And(t2.version == t.version, t2.assigned == t.assigned)
    before_staging = z3.And(t.status >= CREATED, t.status <= APPROVED)
    recount = t2.status == z3.If(t2.everyone(participants), APPROVED, DATA_ASSIGNED)
    steps = {
        "assign": z3.And(  # assign_data
            t.status == CREATED,
            t2.version == t.version + 1,
            _approvals_unchanged(t, t2),
            t2.status == z3.If(t2.assigned, DATA_ASSIGNED, CREATED),
        ),
        "invoke": z3.And(  # invoke
            before_staging,
            t.assigned,
            t.everyone(participants),
            t2.status == STAGED,
            same_content,
            _approvals_unchanged(t, t2),
        ),
    }
    for k in range(N):
        participant = member(z3.IntVal(k), participants)  # the approve/revoke rules
        steps[f"approve{k}"] = z3.And(
            participant,
            z3.Or(z3.And(t.status == CREATED, t.assigned), t.status == DATA_ASSIGNED),
            same_content,
            t2.has[k],
            t2.approved_at[k] == t.version,
            _approvals_unchanged(t, t2, but=k),
            recount,
        )
        steps[f"revoke{k}"] = z3.And(
            participant,
            before_staging,
            t.has[k],
            same_content,
            z3.Not(t2.has[k]),
            _approvals_unchanged(t, t2, but=k),
            recount,
        )
    return steps


def _unsat(*facts: z3.BoolRef) -> bool:
    solver = z3.Solver()
    solver.add(*facts)
    return solver.check() == z3.unsat


def test_no_change_after_an_approval() -> None:
    """No approval ever goes stale (inductive invariant): every recorded approval is of
    the current content, and a task someone approved is not Created (so AssignData, the
    only change to a task after creation, is refused). A function changed after creation
    makes invoke fail (its digest is pinned in the task)."""
    t, t2, participants = _ghost("t"), _ghost("t2"), z3.BitVec("participants", N)

    def invariant(g: Ghost) -> z3.BoolRef:
        return z3.And(
            [
                z3.Implies(g.has[k], z3.And(g.approved_at[k] == g.version, g.status != CREATED))
                for k in range(N)
            ]
        )

    step = z3.Or(list(_steps(t, t2, participants).values()))
    assert _unsat(invariant(t), step, z3.Not(invariant(t2)))
    initial = dataclasses.replace(  # CreateTask: Created, no approvals
        t, status=z3.IntVal(CREATED), has=(z3.BoolVal(False),) * N
    )
    assert _unsat(z3.Not(invariant(initial)))


def test_invoke_needs_every_participants_approval_of_the_current_digest() -> None:
    """From any state (even one changed after approvals, which the rules exclude), invoke
    stages a task of several participants only if each approved its current content,
    the digest being collision-resistant."""
    t, t2, participants = _ghost("t"), _ghost("t2"), z3.BitVec("participants", N)
    collision_free = [
        z3.Implies(DIGEST(t.approved_at[k]) == DIGEST(t.version), t.approved_at[k] == t.version)
        for k in range(N)
    ]
    approved_now = [
        z3.Implies(
            member(z3.IntVal(k), participants),
            z3.And(t.has[k], t.approved_at[k] == t.version),
        )
        for k in range(N)
    ]
    several = z3.Not(_popcount_one(participants))
    invoke = _steps(t, t2, participants)["invoke"]
    assert not _unsat(*collision_free, invoke, several)  # not vacuous
    assert _unsat(*collision_free, invoke, several, z3.Not(z3.And(approved_now)))


@pytest.mark.parametrize("k", range(N))
def test_a_revoked_approval_no_longer_counts(k: int) -> None:
    """After participant k revokes, nothing but k's approval gives k an approval back,
    and invoke is refused without it (a task of several participants)."""
    t, t2, participants = _ghost("t"), _ghost("t2"), z3.BitVec("participants", N)
    steps = _steps(t, t2, participants)
    assert _unsat(steps[f"revoke{k}"], t2.has[k])
    others = z3.Or([step for name, step in steps.items() if name != f"approve{k}"])
    assert _unsat(z3.Not(t.has[k]), others, t2.has[k])
    several = z3.Not(_popcount_one(participants))
    participant = member(z3.IntVal(k), participants)
    assert _unsat(z3.Not(t.has[k]), participant, several, steps["invoke"])


INPUT_STEPS = {"a": "alice", "b": "bob"}


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.sampled_from(["a", "b", "out", "alice", "bob", "-alice", "-bob", "invoke"]),
        max_size=10,
    )
)
def test_the_code_keeps_the_approval_rules(steps: list[str]) -> None:
    """The operations above, run on core.tasks: changes only before any approval, every
    approval of the current digest, revocation until staging, and invoke exactly when
    every participant approved the current digest."""
    files = (FunctionFile("a"), FunctionFile("b"))
    function = Function(
        "f", "builtin-echo", "", ExecutorType.BUILTIN, True, b"", (), files,
        (FunctionFile("out"),), "fo",
    )  # fmt: skip
    task = tasks.create_task(
        task_uuid="t",
        function=function,
        creator="alice",
        executor="builtin",
        arguments="{}",
        inputs_ownership=[("a", ["alice"]), ("b", ["bob"])],
        outputs_ownership=[("out", ["alice", "bob"])],
        max_limits=Limits(600.0, 3600.0, 8192),
    )
    crypto = FileCrypto(CryptoSchema.RAW)
    for step in steps:
        before, digest = task, tasks.task_digest(task)
        ready = before.status <= TaskStatus.APPROVED and tasks.all_data_assigned(before)
        ready &= all(before.approvals.get(p) == digest for p in before.participants)
        try:
            if step in USERS:
                task = tasks.approve(task, step)
            elif step.startswith("-"):
                task = tasks.revoke(task, step[1:])
                assert step[1:] not in task.approvals
            elif step == "invoke":
                task, _ = tasks.invoke(task, function, FunctionUsage("f"))
            elif step == "out":
                output = OutputFile("o", "file:///o", crypto, frozenset({"alice", "bob"}))
                task = tasks.assign_data(task, [], [("out", output)])
            else:
                owner = frozenset({INPUT_STEPS[step]})
                input_file = InputFile(step, "file:///i", bytes(16), crypto, owner)
                task = tasks.assign_data(task, [(step, input_file)], [])
        except TeaclaveError:
            assert step != "invoke" or not ready
            continue
        assert step != "invoke" or ready
        if step in INPUT_STEPS or step == "out":
            assert not before.approvals, "a task changed after an approval"
        current = tasks.task_digest(task)
        assert all(approved == current for approved in task.approvals.values())
        assert task.status is not TaskStatus.CREATED or not task.approvals


# --- weakening any rule gives a counterexample -------------------------------------------


def _weakenings() -> list[tuple[str, str, int]]:
    found = []
    for api, rule in RULES.items():
        found += [(api, "conditions", i) for i in range(len(rule.conditions))]
        found += [(api, "each_file", i) for i in range(len(rule.each_file))]
    return found


def _replay(concrete: Concrete, api: str) -> bool:
    return decide(api, concrete.subject(), concrete.facts()).allowed


@pytest.mark.parametrize(("api", "part", "index"), _weakenings())
def test_dropping_a_condition_is_caught(
    monkeypatch: pytest.MonkeyPatch, api: str, part: str, index: int
) -> None:
    rule = RULES[api]
    kept = tuple(c for i, c in enumerate(getattr(rule, part)) if i != index)
    monkeypatch.setitem(RULES, api, dataclasses.replace(rule, **{part: kept}))
    s = symbolic()
    model = counterexample(s, z3.Implies(allowed(api, s), spec(api, s)))
    assert model is not None, "the weakened rule still meets the specification"
    concrete = from_model(model, s)
    assert _replay(concrete, api)  # the weakened engine lets it through
    monkeypatch.undo()
    assert not _replay(concrete, api)  # the real one does not


def _role_grants() -> list[tuple[str, RoleKind]]:
    kinds = [k for k in KINDS if k is not RoleKind.PLATFORM_ADMIN]
    return [
        (api, kind)
        for api, kind in itertools.product(USER_APIS, kinds)
        if kind not in RULES[api].roles
    ]


@pytest.mark.parametrize(("api", "kind"), _role_grants())
def test_granting_a_role_is_caught(
    monkeypatch: pytest.MonkeyPatch, api: str, kind: RoleKind
) -> None:
    rule: Rule = RULES[api]
    monkeypatch.setitem(RULES, api, dataclasses.replace(rule, roles=rule.roles | {kind}))
    s = symbolic()
    assert counterexample(s, z3.Implies(allowed(api, s), spec(api, s))) is not None


# --- the running engine agrees with the model --------------------------------------------

masks = st.integers(0, (1 << N) - 1)
indices = st.integers(0, N - 1)


@st.composite
def concrete_files(draw: st.DrawFn) -> ConcreteFile:
    return ConcreteFile(
        owners=draw(masks),
        exists=draw(st.booleans()),
        declared=draw(st.none() | masks),
        present=draw(st.booleans()),
    )


@st.composite
def concrete_states(draw: st.DrawFn) -> Concrete:
    kind = draw(st.integers(0, len(KINDS) - 1))
    has_attribute = KINDS[kind] in WITH_ATTRIBUTE
    return Concrete(
        user=draw(indices),
        kind=kind,
        attribute=draw(st.integers(0, len(ATTRIBUTES) - 1)) if has_attribute else 0,
        file=draw(concrete_files()),
        files=tuple(draw(concrete_files()) for _ in range(FILES)),
        function_owner=draw(indices),
        public=draw(st.booleans()),
        listed_users=draw(masks),
        listed_attributes=draw(st.integers(0, (1 << len(ATTRIBUTES)) - 1)) & ~1,
        disabled=draw(st.booleans()),
        creator=draw(indices),
        participants=draw(masks),
        listed_user=draw(indices),
        new_owners=draw(masks),
        user_entry_style=tuple(draw(st.booleans()) for _ in range(N)),
    )


@settings(max_examples=200, deadline=None)
@given(concrete=concrete_states())
def test_engine_agrees_with_the_model(concrete: Concrete) -> None:
    state = concrete.state()
    for api in USER_APIS:
        decision = decide(api, concrete.subject(), concrete.facts())
        assert decision.allowed == evaluate(allowed(api, state)), api
        if decision.allowed:
            assert decision.redacted == evaluate(redacted(api, state)), api
