"""Python functions through the platform: encrypted files in, encrypted results out."""

import re
import textwrap

import numpy as np
import pytest
from e2e_helpers import own_data, run_task
from e2e_platform import Platform, wait_for

from teaclave.client import (
    FrontendClient,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    InvalidArgument,
    TaskCanceled,
    TaskFailed,
    TaskFailure,
    TaskStatus,
)

ECHO = """
def entrypoint(argv):
    assert argv[0] == "message"
    return argv[1]
"""

TRAIN = """
import csv, io
import numpy as np
from teaclave import open

def entrypoint(argv):
    options = dict(zip(argv[::2], argv[1::2]))
    with open("training_data", "rb") as data:
        rows = np.array(list(csv.reader(io.TextIOWrapper(data))), dtype=float)
    x, y = rows[:, :-1], rows[:, -1]
    x = np.hstack([x, np.ones((len(x), 1))])
    weights = np.zeros(x.shape[1])
    for _ in range(int(options["steps"])):
        predicted = 1 / (1 + np.exp(-x @ weights))
        weights -= float(options["alpha"]) * x.T @ (predicted - y) / len(y)
    with open("model", "wb") as model:
        model.write(" ".join(repr(float(w)) for w in weights).encode())
    return "Training is finished!"
"""

PREDICT = """
import numpy as np

def entrypoint(argv):
    with teaclave_open("model", "rb") as model:
        weights = np.array(model.read().split(), dtype=float)
    with teaclave_open("data", "rb") as data:
        x = np.loadtxt(data, delimiter=",", ndmin=2)
    x = np.hstack([x, np.ones((len(x), 1))])
    labels = (1 / (1 + np.exp(-x @ weights)) > 0.5).astype(float)
    with teaclave_open("predictions", "wb") as out:
        out.write("\\n".join(str(int(v)) for v in labels).encode())
    return str(labels)
"""

LOOP = "def entrypoint(argv):\n    while True:\n        pass\n"


def register_python(
    client: FrontendClient,
    payload: str,
    arguments: tuple[str, ...] = (),
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
) -> str:
    return client.register_function(
        "python-function",
        "a Python function",
        "python",
        payload=textwrap.dedent(payload).encode(),
        arguments=[FunctionArgument(key, "", True) for key in arguments],
        inputs=[FunctionInput(name) for name in inputs],
        outputs=[FunctionOutput(name) for name in outputs],
    )


def echo(platform: Platform, message: str) -> bytes:
    user = platform.new_user("PlatformAdmin")
    function_id = register_python(user, ECHO, ("message",))
    task_id = run_task(user, function_id, {"message": message}, {}, {}, "mesapy")
    return user.get_task_result(task_id, timeout=60)


def test_echo(platform: Platform) -> None:
    assert echo(platform, "Hello From Teaclave!") == b"Hello From Teaclave!"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "invalid function payload: empty"),
        (b"\xff", "invalid function payload: not UTF-8"),
        (b"def entrypoint(argv)\n", "invalid function payload: expected ':' (line 1)"),
        (b"def main(argv):\n    return 1\n", "invalid function payload: no top-level 'entrypoint'"),
    ],
)
def test_payloads_are_checked_on_registration(
    platform: Platform, payload: bytes, message: str
) -> None:
    user = platform.new_user("PlatformAdmin")
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        user.register_function("bad", "bad", "python", payload=payload)


def test_logistic_regression_train_then_predict(platform: Platform) -> None:
    rng = np.random.default_rng(7)
    points = rng.normal(size=(200, 2))
    labels = (points[:, 0] + 2 * points[:, 1] > 0).astype(int)
    training = "".join(f"{a},{b},{y}\n" for (a, b), y in zip(points.tolist(), labels, strict=True))
    queries = np.array([[2.0, 2.0], [-2.0, -2.0], [3.0, -0.5], [-3.0, 0.5]])
    owner = platform.new_user("PlatformAdmin")
    train_id = register_python(owner, TRAIN, ("alpha", "steps"), ("training_data",), ("model",))
    predict_id = register_python(owner, PREDICT, (), ("model", "data"), ("predictions",))

    trained = own_data(platform, owner, training.encode())
    task_id = run_task(
        owner,
        train_id,
        {"alpha": 0.5, "steps": 300},
        {"training_data": (owner, trained.input_id)},
        {"model": (owner, trained.output_id)},
        "python",
    )
    outputs = owner.get_task_outputs(task_id, timeout=60)
    assert outputs.return_value == b"Training is finished!"
    weights = np.array(trained.read_output(outputs.tags_map["model"]).split(), dtype=float)
    assert weights[1] > weights[0] > 0  # the boundary x1 + 2 x2 = 0

    model_id = owner.register_input_from_output(trained.output_id)
    asked = own_data(platform, owner, "".join(f"{a},{b}\n" for a, b in queries).encode())
    task_id = run_task(
        owner,
        predict_id,
        {},
        {"model": (owner, model_id), "data": (owner, asked.input_id)},
        {"predictions": (owner, asked.output_id)},
        "python",
    )
    outputs = owner.get_task_outputs(task_id, timeout=60)
    assert outputs.return_value == b"[1. 0. 1. 0.]"
    assert asked.read_output(outputs.tags_map["predictions"]) == b"1\n0\n1\n0"


def test_cancel_a_running_python_task(platform: Platform) -> None:
    user = platform.new_user("PlatformAdmin")
    task_id = run_task(user, register_python(user, LOOP), {}, {}, {}, "python")
    wait_for(lambda: user.get_task(task_id).status is TaskStatus.RUNNING, what="Running")
    user.cancel_task(task_id)
    with pytest.raises(TaskCanceled, match="Task Canceled by the user"):
        user.get_task_result(task_id, timeout=30)
    assert echo(platform, "still serving") == b"still serving"


def test_a_tasks_cpu_limit_ends_it(platform: Platform) -> None:
    user = platform.new_user("PlatformAdmin")
    limits = {"teaclave.cpu_secs": 1, "teaclave.wall_secs": 30}
    task_id = run_task(user, register_python(user, LOOP), limits, {}, {}, "python")
    with pytest.raises(TaskFailed) as info:
        user.get_task_result(task_id, timeout=60)
    # Named only when the loop used its CPU second; unbounded, it would meet the wall limit.
    reason = "CPU time limit (1 s) exceeded"
    assert info.value.reason == reason
    task = user.get_task(task_id)
    assert (task.status, task.result) == (TaskStatus.FINISHED, TaskFailure(reason))  # Teaclave's
    assert task.function_arguments == limits
    assert echo(platform, "next task") == b"next task"


def test_a_function_fixes_its_memory_limit_for_every_task(platform: Platform) -> None:
    user = platform.new_user("PlatformAdmin")
    payload = "def entrypoint(argv):\n    return str(argv) + str(len(bytearray(200 << 20)))\n"
    function_id = user.register_function(
        "bounded",
        "at most 64 MiB",
        "python",
        payload=payload.encode(),
        arguments=[FunctionArgument("teaclave.memory_mb", "64", False)],
    )
    with pytest.raises(InvalidArgument, match=r"'teaclave\.memory_mb' cannot be overwritten"):
        user.create_task(function_id, {"teaclave.memory_mb": 4096}, "python")
    task_id = run_task(user, function_id, {}, {}, {}, "python")
    with pytest.raises(TaskFailed, match=r"memory limit \(64 MiB\) exceeded: MemoryError"):
        user.get_task_result(task_id, timeout=60)


def test_limits_are_not_the_functions_arguments(platform: Platform) -> None:
    user = platform.new_user("PlatformAdmin")
    function_id = register_python(user, "def entrypoint(argv):\n    return repr(argv)\n", ("k",))
    arguments = {"k": "v", "teaclave.wall_secs": 5, "teaclave.memory_mb": "512"}
    task_id = run_task(user, function_id, arguments, {}, {}, "python")
    assert user.get_task_result(task_id, timeout=60) == b"['k', 'v']"
    assert user.get_task(task_id).function_arguments == arguments


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"teaclave.cpu_secs": 601},
            r"'teaclave.cpu_secs' must be a number of seconds in \(0, 600\]",
        ),
        ({"teaclave.disk_mb": 1}, "unknown platform argument 'teaclave.disk_mb'"),
    ],
)
def test_bad_limits_are_refused_at_create_task(
    platform: Platform, arguments: dict[str, object], message: str
) -> None:
    user = platform.new_user("PlatformAdmin")
    with pytest.raises(InvalidArgument, match=message):
        user.create_task(register_python(user, LOOP), arguments, "python")
