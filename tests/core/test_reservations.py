"""An output's key and iv encrypt one plaintext, ever: reservation, upload record, release."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teaclave.core import tasks
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.model import (
    CryptoSchema,
    Executor,
    FileCrypto,
    InputFile,
    OutputFile,
    Task,
    TaskResult,
    TaskStatus,
)

GCM = FileCrypto(CryptoSchema.AES_GCM_128, bytes(16), bytes(12))
CMAC = bytes(16)
RESERVED = "is reserved by a staged or running task"
USED = "was used by an upload that has not completed"


def output(uuid: str = "o", **changes: object) -> OutputFile:
    return replace(OutputFile(uuid, f"file:///{uuid}", GCM, frozenset({"alice"})), **changes)  # type: ignore[arg-type]


def task(uuid: str = "t", outputs: dict[str, OutputFile] | None = None, **changes: object) -> Task:
    outputs = {"out": output()} if outputs is None else outputs
    base = Task(
        uuid=uuid,
        creator="alice",
        function_id="f",
        function_owner="fo",
        function_arguments="{}",
        executor=Executor.BUILTIN,
        inputs_ownership={},
        outputs_ownership={name: frozenset({"alice"}) for name in outputs},
        participants=frozenset({"alice"}),
        assigned_outputs=outputs,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def running(
    uuid: str = "t", outputs: dict[str, OutputFile] | None = None, **changes: object
) -> Task:
    return task(uuid, outputs, **({"status": TaskStatus.RUNNING, "executor_id": "e1"} | changes))


def refused(status: Status, message: str, call: object, *args: object) -> None:
    with pytest.raises(TeaclaveError) as caught:
        call(*args)  # type: ignore[operator]
    assert (caught.value.status, caught.value.message) == (status, message)


@pytest.mark.parametrize(
    ("record", "for_task", "reason"),
    [
        (output(), "", ""),
        (output(), "t", ""),
        (output(reserved_by="t"), "t", ""),
        (output(reserved_by="t", upload_started=True), "t", ""),
        (output(reserved_by="t"), "", RESERVED),
        (output(reserved_by="t"), "u", RESERVED),
        (output(reserved_by="t", upload_started=True), "u", USED),
        (output(reserved_by="t", upload_started=True), "", USED),
        (output(cmac=CMAC, reserved_by="t", upload_started=True), "t", "was already written"),
        (output(replaced=True), "t", "was replaced by an update"),
    ],
)
def test_why_not_writable(record: OutputFile, for_task: str, reason: str) -> None:
    assert record.why_not_writable(for_task) == reason


# --- InvokeTask: reservation ---------------------------------------------------


def test_invoke_reserves_every_output_for_the_task() -> None:
    current = {"a": output("oa"), "b": output("ob")}
    reserved = tasks.reserve_outputs(task(outputs=current), current)
    assert reserved == [output("oa", reserved_by="t"), output("ob", reserved_by="t")]


@pytest.mark.parametrize(
    ("current", "message"),
    [
        ({"out": output(reserved_by="u")}, f"output 'out' {RESERVED}"),
        ({"out": output(reserved_by="u", upload_started=True)}, f"output 'out' {USED}"),
        ({"out": output(cmac=CMAC)}, "output 'out' was already written"),
        ({"out": output(replaced=True)}, "output 'out' was replaced by an update"),
        ({"a": output(), "b": output()}, "output 'b' is the file of output 'a' too"),
    ],
)
def test_invoke_refuses_an_output_it_may_not_write(
    current: dict[str, OutputFile], message: str
) -> None:
    refused(
        Status.UNKNOWN,
        f"failed to invoke task: {message}",
        tasks.reserve_outputs,
        task(outputs=current),
        current,
    )


# --- AssignData -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "reason"),
    [(output(reserved_by="u"), RESERVED), (output(reserved_by="u", upload_started=True), USED)],
)
def test_assign_refuses_a_held_or_used_output(record: OutputFile, reason: str) -> None:
    refused(
        Status.PERMISSION_DENIED,
        f"permission denied: output 'out' {reason}",
        tasks.assign_data,
        task(outputs={}, outputs_ownership={"out": frozenset({"alice"})}),
        [],
        [("out", record)],
    )


def test_assign_refuses_one_file_in_two_output_slots() -> None:
    ownership = {"a": frozenset({"alice"}), "b": frozenset({"alice"})}
    created = task(outputs={}, outputs_ownership=ownership)
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: output 'b' is the file of output 'a' too",
        tasks.assign_data,
        created,
        [],
        [("a", output()), ("b", output())],
    )
    once = tasks.assign_data(created, [], [("a", output())])
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: output 'b' is the file of output 'a' too",
        tasks.assign_data,
        once,
        [],
        [("b", output())],
    )
    # Inputs may be read twice.
    ownership_in = {"x": frozenset({"alice"}), "y": frozenset({"alice"})}
    same = InputFile("i", "file:///i", CMAC, GCM, frozenset({"alice"}))
    reading = task(outputs={}, inputs_ownership=ownership_in)
    assigned = tasks.assign_data(reading, [("x", same), ("y", same)], [])
    assert assigned.status is TaskStatus.DATA_ASSIGNED


# --- the upload record ------------------------------------------------------------


@pytest.mark.parametrize("record", [output(reserved_by="t"), output()])
def test_start_upload_records_the_upload(record: OutputFile) -> None:
    started = tasks.start_upload(running(), "e1", "out", record)
    assert started == output(reserved_by="t", upload_started=True)
    assert tasks.start_upload(running(), "e1", "out", started) == started  # repeatable


@pytest.mark.parametrize(
    ("holder", "record", "reason"),
    [
        (task(status=TaskStatus.STAGED), output(reserved_by="t"), "the task is Staged"),
        (task(status=TaskStatus.CANCELED), output(reserved_by="t"), "the task is Canceled"),
        (running(executor_id="e2"), output(reserved_by="t"), "the task runs on another executor"),
        (running(cancel_requested=True), output(reserved_by="t"), "the task was canceled"),
        (running(), None, "the task has no output 'out'"),
        (running(), output("other", reserved_by="t"), "the task has no output 'out'"),
        (running(), output(reserved_by="u"), f"the output {RESERVED}"),
        (running(), output(reserved_by="u", upload_started=True), f"the output {USED}"),
        (running(), output(cmac=CMAC), "the output was already written"),
        (running(), output(replaced=True), "the output was replaced by an update"),
        (
            running(outputs={"a": output(), "out": output()}),
            output(),
            "the output is the file of output 'a' too",
        ),
    ],
)
def test_start_upload_refusals(holder: Task, record: OutputFile | None, reason: str) -> None:
    refused(
        Status.FAILED_PRECONDITION,
        f"cannot start the upload: {reason}",
        tasks.start_upload,
        holder,
        "e1",
        "out",
        record,
    )


def test_a_task_that_ends_frees_only_outputs_whose_upload_never_began() -> None:
    assert tasks.release("t", output(reserved_by="t")) == output()
    assert tasks.release("t", output(reserved_by="t", upload_started=True)) is None
    assert tasks.release("t", output(reserved_by="u")) is None
    assert tasks.release("t", output()) is None


# --- the result: cmacs only of outputs this task began uploading -------------------


def test_finish_sets_the_cmacs_of_the_outputs_uploaded() -> None:
    current = {"out": output(reserved_by="t", upload_started=True)}
    result = TaskResult.success(b"done", {"out": CMAC})
    finished, written = tasks.finish(running(outputs=current), result, current)
    assert written == {"out": replace(current["out"], cmac=CMAC)}
    assert (finished.status, finished.result) == (TaskStatus.FINISHED, result)
    assert finished.assigned_outputs == written


@pytest.mark.parametrize(
    ("current", "tags", "reason"),
    [
        ({"out": output(reserved_by="t")}, {"out": CMAC}, "output 'out' has no upload record"),
        ({"out": output()}, {"out": CMAC}, "output 'out' has no upload record"),
        ({"out": output(reserved_by="t", upload_started=True)}, {"x": CMAC}, "no output named 'x'"),
        ({}, {"out": CMAC}, "output 'out' is not registered"),
        (
            {"out": output(reserved_by="u", upload_started=True)},
            {"out": CMAC},
            f"output 'out' {USED}",
        ),
        (
            {"out": output(reserved_by="t", upload_started=True)},
            {"out": CMAC[:8]},
            "cmac of output 'out' is malformed",
        ),
    ],
)
def test_finish_fails_without_setting_any_cmac(
    current: dict[str, OutputFile], tags: dict[str, bytes], reason: str
) -> None:
    failed, written = tasks.finish(
        running(outputs={"out": output()}), TaskResult.success(b"", tags), current
    )
    assert (failed.status, failed.result, written) == (
        TaskStatus.FAILED,
        TaskResult.failure(f"Runtime Error: {reason}"),
        {},
    )


# --- the property: one upload per output, ever -------------------------------------

TASKS = ("t1", "t2", "t3")
SLOTS = {"t1": ("o1",), "t2": ("o1",), "t3": ("o1", "o2")}
Step = tuple[str, str, str]
steps = st.lists(
    st.tuples(
        st.sampled_from(("invoke", "legacy", "start", "end", "finish", "retire")),
        st.sampled_from(TASKS),
        st.sampled_from(("o1", "o2")),
    ),
    max_size=30,
)


@settings(max_examples=1000, deadline=None)
@given(steps)
def test_no_interleaving_uploads_an_output_twice(script: list[Step]) -> None:
    """Tasks sharing outputs, driven through every rule in any order: each output's
    upload is started by at most one task, never after it was written or replaced.

    "legacy" runs a task without reserving its outputs (staged before reservations
    existed), so the upload record must hold the line on its own too.
    """
    outputs = {uuid: output(uuid) for uuid in ("o1", "o2")}
    status = dict.fromkeys(TASKS, TaskStatus.APPROVED)
    started: dict[str, set[str]] = {uuid: set() for uuid in outputs}

    def record(name: str) -> Task:
        slots = {uuid: outputs[uuid] for uuid in SLOTS[name]}
        return running(name, slots, status=status[name])

    def end(name: str, ended: TaskStatus) -> None:
        status[name] = ended
        for o in SLOTS[name]:
            outputs[o] = tasks.release(name, outputs[o]) or outputs[o]

    for action, name, uuid in script:
        try:
            if action == "invoke" and status[name] is TaskStatus.APPROVED:
                current = {o: outputs[o] for o in SLOTS[name]}
                for reserved in tasks.reserve_outputs(record(name), current):
                    outputs[reserved.uuid] = reserved
                status[name] = TaskStatus.RUNNING
            elif action == "legacy" and status[name] is TaskStatus.APPROVED:
                status[name] = TaskStatus.RUNNING
            elif action == "start" and uuid in SLOTS[name]:
                before = outputs[uuid]
                outputs[uuid] = tasks.start_upload(record(name), "e1", uuid, before)
                assert before.cmac is None
                assert not before.replaced
                started[uuid].add(name)
            elif action == "end" and status[name] is TaskStatus.RUNNING:
                end(name, TaskStatus.FAILED)  # failed, canceled or lost
            elif action == "finish" and status[name] is TaskStatus.RUNNING:
                result = TaskResult.success(b"", dict.fromkeys(SLOTS[name], CMAC))
                current = {o: outputs[o] for o in SLOTS[name]}
                ended, written = tasks.finish(record(name), result, current)
                for o, output_file in written.items():
                    assert output_file.reserved_by == name
                    outputs[o] = output_file
                end(name, ended.status)
            elif action == "retire" and not outputs[uuid].why_not_writable():
                outputs[uuid] = replace(outputs[uuid], replaced=True)  # UpdateOutputFile
        except TeaclaveError:
            continue
    assert all(len(names) <= 1 for names in started.values()), started
