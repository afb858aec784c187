"""``teaclave function ...``: registering and managing functions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypedDict

from teaclave.cli.context import Context, Subcommands, add_command, add_group, key_value
from teaclave.client import FunctionArgument, FunctionInput, FunctionOutput
from teaclave.core.model import ExecutorType


def _file_spec(text: str) -> tuple[str, str]:
    """``NAME[:DESCRIPTION]``."""
    name, _, description = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"want NAME[:DESCRIPTION], got {text!r}")
    return name, description


class _Definition(TypedDict):
    name: str
    description: str
    executor_type: str
    public: bool
    payload: bytes
    arguments: list[FunctionArgument]
    inputs: list[FunctionInput]
    outputs: list[FunctionOutput]
    user_allowlist: list[str]
    usage_quota: int


def _definition(args: argparse.Namespace) -> _Definition:
    """The register/update keyword arguments from the definition options."""
    arguments = [FunctionArgument(k, v, allow_overwrite=True) for k, v in args.argument]
    arguments += [FunctionArgument(k, v, allow_overwrite=False) for k, v in args.fixed_argument]
    return {
        "name": args.name,
        "description": args.description,
        "executor_type": args.executor_type,
        "public": args.public,
        "payload": args.payload.read_bytes() if args.payload else b"",
        "arguments": arguments,
        "inputs": [FunctionInput(n, d) for n, d in args.input]
        + [FunctionInput(n, d, optional=True) for n, d in args.optional_input],
        "outputs": [FunctionOutput(n, d) for n, d in args.output]
        + [FunctionOutput(n, d, optional=True) for n, d in args.optional_output],
        "user_allowlist": args.allow,
        "usage_quota": args.quota,
    }


def _register(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        function_id = fe.register_function(**_definition(args))
    ctx.emit({"function_id": function_id}, function_id)


def _update(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        function_id = fe.update_function(args.function_id, **_definition(args))
    ctx.emit({"function_id": function_id}, function_id)


def _get(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        function = fe.get_function(args.function_id)
    ctx.emit(function)


def _delete(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        fe.delete_function(args.function_id)
    ctx.emit({"function_id": args.function_id}, f"Deleted {args.function_id}")


def _disable(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        fe.disable_function(args.function_id)
    ctx.emit({"function_id": args.function_id}, f"Disabled {args.function_id}")


def _list(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        listing = fe.list_functions(args.user_id or fe.user_id)
    ctx.emit(listing)


def _usage(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        usage = fe.get_function_usage_stats(args.function_id)
    ctx.emit(usage)


def _definition_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="for builtin functions, e.g. builtin-echo")
    parser.add_argument("--description", default="")
    parser.add_argument("--executor-type", required=True, choices=[e.value for e in ExecutorType])
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument(
        "--public",
        dest="public",
        action="store_true",
        default=True,
        help="anyone may create tasks of it (the default)",
    )
    visibility.add_argument(
        "--private", dest="public", action="store_false", help="only you and --allow entries"
    )
    parser.add_argument(
        "--payload",
        type=Path,
        metavar="FILE",
        help="the code (python source; wamr, wasi: a .wasm module)",
    )
    parser.add_argument(
        "--argument",
        "--arg",
        dest="argument",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=DEFAULT",
        help="an argument task creators may set, with its default (repeatable)",
    )
    parser.add_argument(
        "--fixed-argument",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an argument task creators cannot change (repeatable)",
    )
    for option in ("input", "optional-input", "output", "optional-output"):
        parser.add_argument(
            f"--{option}",
            type=_file_spec,
            action="append",
            default=[],
            metavar="NAME[:DESCRIPTION]",
            help=f"an {option.replace('-', ' ')} file (repeatable)",
        )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="ENTRY",
        help="who may use a private function: a user id (or user:ID), or attribute:ATTR "
        "for every data owner of that organisation (repeatable)",
    )
    parser.add_argument("--quota", type=int, default=-1, help="usage quota (default: unlimited)")


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``function`` and its subcommands."""
    group = add_group(sub, "function", "functions")
    _definition_options(add_command(group, parent, "register", _register, "register a function"))
    parser = add_command(group, parent, "update", _update, "replace a function's definition")
    parser.add_argument("function_id")
    _definition_options(parser)
    for name, handler, help_text in (
        ("get", _get, "show a function"),
        ("delete", _delete, "delete a function"),
        ("disable", _disable, "disable a function"),
        ("usage", _usage, "show a function's quota and usage"),
    ):
        add_command(group, parent, name, handler, help_text).add_argument("function_id")
    add_command(group, parent, "list", _list, "list functions").add_argument(
        "user_id", nargs="?", help="whose functions (default: yours)"
    )
