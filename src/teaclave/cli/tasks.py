"""``teaclave task ...``: creating, approving, running tasks and reading results."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from typing import Any

from teaclave.cli.context import (
    Context,
    Subcommands,
    UsageError,
    add_command,
    add_group,
    human,
    key_value,
    plain,
)
from teaclave.client import DataMap, OwnerList
from teaclave.core.limits import PREFIX, Limits


def _owners(pairs: list[tuple[str, str]]) -> list[OwnerList]:
    return [OwnerList(name, [u for u in users.split(",") if u]) for name, users in pairs]


def task_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments of `task create`: --args-json, then each --argument, then the limit
    options."""
    try:
        arguments = json.loads(args.args_json) if args.args_json else {}
    except ValueError as exc:
        raise UsageError(f"--args-json is not JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise UsageError("--args-json must be a JSON object")
    arguments.update(args.argument)
    for name in (f.name for f in fields(Limits)):
        if (value := getattr(args, name)) is not None:
            arguments[PREFIX + name] = value
    return arguments


def _create(args: argparse.Namespace, ctx: Context) -> None:
    arguments = task_arguments(args)
    with ctx.frontend() as fe:
        executor = args.executor or fe.get_function(args.function_id).executor_type
        task_id = fe.create_task(
            args.function_id,
            arguments,
            executor,
            _owners(args.input_owner),
            _owners(args.output_owner),
        )
    ctx.emit({"task_id": task_id}, task_id)


def _get(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        task = fe.get_task(args.task_id)
    shown = {k: v for k, v in plain(task).items() if k != "approval_digest_contents"}
    covered = human(task.approval_digest_contents).replace("\n", "\n  ")
    ctx.emit(task, f"{human(shown)}\napproval digest covers:\n  {covered}")


def _assign(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        fe.assign_data_to_task(
            args.task_id,
            [DataMap(name, data_id) for name, data_id in args.input],
            [DataMap(name, data_id) for name, data_id in args.output],
        )
    ctx.emit({"task_id": args.task_id}, f"Assigned data to {args.task_id}")


def _approve(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        digest = fe.approve_task(args.task_id, args.digest or "")
    ctx.emit(
        {"task_id": args.task_id, "approval_digest": digest},
        f"Approved {args.task_id} (approval digest {digest})",
    )


def _revoke(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        fe.revoke_task_approval(args.task_id)
    ctx.emit({"task_id": args.task_id}, f"Revoked your approval of {args.task_id}")


def _invoke(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        fe.invoke_task(args.task_id)
    ctx.emit({"task_id": args.task_id}, f"Invoked {args.task_id}")


def _cancel(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        fe.cancel_task(args.task_id)
    ctx.emit({"task_id": args.task_id}, f"Cancel requested for {args.task_id}")


def _result(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        outputs = fe.get_task_outputs(args.task_id, timeout=args.timeout)
    summary = outputs.return_value.decode("utf-8", "replace")
    lines = [summary]
    lines += [f"cmac of {name}: {cmac.hex()}" for name, cmac in outputs.tags_map.items()]
    lines += [f"log: {line}" for line in outputs.log]
    ctx.emit(
        {"return_value": summary, "tags_map": outputs.tags_map, "log": outputs.log},
        "\n".join(lines),
    )


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``task`` and its subcommands."""
    group = add_group(sub, "task", "tasks")
    parser = add_command(group, parent, "create", _create, "create a task of a function")
    parser.add_argument("function_id")
    parser.add_argument(
        "--executor",
        help="builtin, python (or mesapy), wamr or wasi (default: the function's executor type)",
    )
    parser.add_argument(
        "--argument",
        "--arg",
        dest="argument",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a string argument (repeatable; over --args-json)",
    )
    parser.add_argument("--args-json", metavar="JSON", help="arguments as a JSON object")
    parser.add_argument(
        "--cpu-secs", type=float, help="CPU time limit of a Python or Wasm function"
    )
    parser.add_argument(
        "--wall-secs", type=float, help="wall time limit of a Python or Wasm function"
    )
    parser.add_argument(
        "--memory-mb", type=int, help="memory limit of a Python or Wasm function, MiB"
    )
    for kind in ("input", "output"):
        parser.add_argument(
            f"--{kind}-owner",
            type=key_value,
            action="append",
            default=[],
            metavar="NAME=USER[,USER...]",
            help=f"owners of the {kind} NAME (repeatable)",
        )

    parser = add_command(group, parent, "assign", _assign, "assign your files to a task")
    parser.add_argument("task_id")
    for kind in ("input", "output"):
        parser.add_argument(
            f"--{kind}",
            type=key_value,
            action="append",
            default=[],
            metavar="NAME=DATA_ID",
            help=f"bind a registered {kind} file to NAME (repeatable)",
        )
    parser = add_command(group, parent, "approve", _approve, "approve a task")
    parser.add_argument("task_id")
    parser.add_argument(
        "--digest",
        metavar="HEX",
        help="the approval digest you checked (`task get`); refused if the task changed",
    )
    for name, handler, help_text in (
        ("get", _get, "show a task, its approval digest and what the digest covers"),
        ("revoke", _revoke, "withdraw your approval of a task (until it is staged)"),
        ("invoke", _invoke, "start a task (creator only)"),
        ("cancel", _cancel, "cancel a task"),
    ):
        add_command(group, parent, name, handler, help_text).add_argument("task_id")
    parser = add_command(group, parent, "result", _result, "wait for a task's result")
    parser.add_argument("task_id")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds")
