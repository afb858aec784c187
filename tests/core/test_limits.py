"""Limits per function and task (reserved ``teaclave.*`` arguments), as pure rules."""

import json
from dataclasses import replace

import pytest

from teaclave.core import limits, tasks
from teaclave.core.errors import Status, TeaclaveError
from teaclave.core.limits import Limits
from teaclave.core.model import ExecutorType, Function, FunctionArgument

DEFAULTS = Limits(cpu_secs=10.0, wall_secs=60.0, memory_mb=1024)
MAXIMA = Limits(cpu_secs=600.0, wall_secs=3600.0, memory_mb=8192)
PYTHON = ExecutorType.PYTHON


def split(arguments: dict[str, object]) -> tuple[Limits, dict[str, object]]:
    chosen, remaining = limits.split(json.dumps(arguments), DEFAULTS, MAXIMA, PYTHON)
    return chosen, json.loads(remaining)


def invalid(message: str, call: object, *args: object) -> None:
    with pytest.raises(TeaclaveError) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.status is Status.INVALID_ARGUMENT
    assert caught.value.message == message


def test_without_limit_arguments_the_platform_defaults_apply() -> None:
    assert split({"message": "hi"}) == (DEFAULTS, {"message": "hi"})


def test_limit_arguments_replace_defaults_and_are_removed() -> None:
    chosen, remaining = split(
        {"teaclave.cpu_secs": 2, "teaclave.memory_mb": "64", "teaclave.wall_secs": "0.5", "k": 1}
    )
    assert chosen == Limits(cpu_secs=2.0, wall_secs=0.5, memory_mb=64)
    assert remaining == {"k": 1}
    assert isinstance(chosen.cpu_secs, float)
    assert isinstance(chosen.memory_mb, int)


def test_the_maximum_itself_is_allowed() -> None:
    assert split({"teaclave.memory_mb": 8192})[0].memory_mb == 8192


@pytest.mark.parametrize(
    ("key", "value", "kind", "maximum"),
    [
        ("teaclave.cpu_secs", 601, "number of seconds", "600"),
        ("teaclave.cpu_secs", 0, "number of seconds", "600"),
        ("teaclave.wall_secs", -1, "number of seconds", "3600"),
        ("teaclave.wall_secs", "NaN", "number of seconds", "3600"),
        ("teaclave.wall_secs", "1e999", "number of seconds", "3600"),
        ("teaclave.cpu_secs", True, "number of seconds", "600"),
        ("teaclave.cpu_secs", "ten", "number of seconds", "600"),
        ("teaclave.cpu_secs", "", "number of seconds", "600"),
        ("teaclave.cpu_secs", [1], "number of seconds", "600"),
        ("teaclave.memory_mb", 1.5, "whole number of MiB", "8192"),
        ("teaclave.memory_mb", 8193, "whole number of MiB", "8192"),
    ],
)
def test_bad_values_are_refused_naming_the_argument(
    key: str, value: object, kind: str, maximum: str
) -> None:
    message = f"invalid limit: {key!r} must be a {kind} in (0, {maximum}], not {value!r}"
    invalid(message, split, {key: value})


def test_unknown_platform_arguments_are_refused() -> None:
    known = "teaclave.cpu_secs, teaclave.memory_mb, teaclave.wall_secs"
    message = f"invalid limit: unknown platform argument 'teaclave.cpu' ({known})"
    invalid(message, split, {"teaclave.cpu": 1})


def test_builtins_take_no_limits() -> None:
    arguments = '{"teaclave.cpu_secs": 1}'
    message = "invalid task: builtin functions take no limits"
    invalid(message, limits.split, arguments, DEFAULTS, MAXIMA, ExecutorType.BUILTIN)
    assert limits.split("{}", DEFAULTS, MAXIMA, ExecutorType.BUILTIN) == (DEFAULTS, "{}")


def python_function(*arguments: FunctionArgument, executor: ExecutorType = PYTHON) -> Function:
    return Function(
        uuid="f",
        name="f",
        description="",
        executor_type=executor,
        public=True,
        payload=b"def entrypoint(argv): pass\n",
        arguments=arguments,
        inputs=(),
        outputs=(),
        owner="owner",
    )


def test_a_function_may_fix_a_limit_or_leave_it_to_each_task() -> None:
    fixed = FunctionArgument("teaclave.cpu_secs", "5")
    chosen = FunctionArgument("teaclave.memory_mb", "", allow_overwrite=True)
    limits.check_function(python_function(fixed, chosen), MAXIMA)


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (
            FunctionArgument("teaclave.cpu_secs", "9999"),
            "invalid limit: 'teaclave.cpu_secs' must be a number of seconds in (0, 600], "
            "not '9999'",
        ),
        (
            FunctionArgument("teaclave.cpu_secs", ""),
            "invalid limit: 'teaclave.cpu_secs' must be a number of seconds in (0, 600], not ''",
        ),
        (
            FunctionArgument("teaclave.cpus", "", allow_overwrite=True),
            "invalid limit: unknown platform argument 'teaclave.cpus' "
            "(teaclave.cpu_secs, teaclave.memory_mb, teaclave.wall_secs)",
        ),
    ],
)
def test_bad_function_limits_are_refused(argument: FunctionArgument, message: str) -> None:
    invalid(message, limits.check_function, python_function(argument), MAXIMA)


def test_builtin_functions_declare_no_limits() -> None:
    function = python_function(
        FunctionArgument("teaclave.cpu_secs", "5"), executor=ExecutorType.BUILTIN
    )
    invalid(
        "invalid function: builtin functions take no limits",
        limits.check_function,
        function,
        MAXIMA,
    )


# --- through CreateTask's argument rules ------------------------------------------


def merged(function: Function, supplied: dict[str, object]) -> str:
    return tasks.merge_arguments(function.arguments, json.dumps(supplied))


def test_a_task_may_set_a_limit_its_function_does_not_declare() -> None:
    text = merged(python_function(), {"teaclave.wall_secs": 3})
    assert limits.split(text, DEFAULTS, MAXIMA, PYTHON) == (replace(DEFAULTS, wall_secs=3.0), "{}")


def test_a_task_cannot_change_a_limit_its_function_fixed() -> None:
    function = python_function(FunctionArgument("teaclave.cpu_secs", "5"))
    message = "invalid task: argument 'teaclave.cpu_secs' cannot be overwritten"
    invalid(message, merged, function, {"teaclave.cpu_secs": 500})
    assert limits.split(merged(function, {}), DEFAULTS, MAXIMA, PYTHON)[0].cpu_secs == 5.0


def test_a_limit_left_to_each_task_must_be_supplied() -> None:
    function = python_function(FunctionArgument("teaclave.memory_mb", "", allow_overwrite=True))
    invalid("invalid task: missing argument 'teaclave.memory_mb'", merged, function, {})
    assert limits.split(merged(function, {"teaclave.memory_mb": 64}), DEFAULTS, MAXIMA, PYTHON)[
        0
    ] == replace(DEFAULTS, memory_mb=64)


def test_create_task_refuses_a_limit_above_the_maximum() -> None:
    message = "invalid limit: 'teaclave.cpu_secs' must be a number of seconds in (0, 600], not 601"
    invalid(
        message,
        lambda: tasks.create_task(
            task_uuid="t",
            function=python_function(),
            creator="alice",
            executor="python",
            arguments='{"teaclave.cpu_secs": 601}',
            inputs_ownership=[],
            outputs_ownership=[],
            max_limits=MAXIMA,
        ),
    )
