"""``teaclave input ...`` / ``teaclave output ...``: registering encrypted files."""

from __future__ import annotations

import argparse

from teaclave.cli.context import Context, Subcommands, add_command, add_group, hex_bytes
from teaclave.core.model import CryptoSchema


def _register_input(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        data_id = fe.register_input_file(args.url, args.schema, args.key, args.iv, args.cmac)
    ctx.emit({"data_id": data_id}, data_id)


def _register_output(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        data_id = fe.register_output_file(args.url, args.schema, args.key, args.iv)
    ctx.emit({"data_id": data_id}, data_id)


def _update_input(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        data_id = fe.update_input_file(args.data_id, args.url)
    ctx.emit({"data_id": data_id}, data_id)


def _update_output(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        data_id = fe.update_output_file(args.data_id, args.url)
    ctx.emit({"data_id": data_id}, data_id)


def _get_input(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        ctx.emit(fe.get_input_file(args.data_id))


def _get_output(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        ctx.emit(fe.get_output_file(args.data_id))


def _fusion(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        data_id = fe.register_fusion_output(args.owners)
    ctx.emit({"data_id": data_id}, data_id)


def _from_output(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.frontend() as fe:
        data_id = fe.register_input_from_output(args.data_id)
    ctx.emit({"data_id": data_id}, data_id)


def _file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        required=True,
        help="where the file is: file:// (below the platform's execution.file_roots), "
        "http(s)://, s3:// or data:",
    )
    parser.add_argument(
        "--schema", required=True, choices=[s.value for s in CryptoSchema], help="encryption"
    )
    parser.add_argument("--key", type=hex_bytes, default=b"", help="key in hex")
    parser.add_argument("--iv", type=hex_bytes, default=b"", help="iv in hex")


def _update_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_id")
    parser.add_argument("--url", required=True, help="the new location")


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``input`` and ``output`` and their subcommands."""
    inputs = add_group(sub, "input", "input files")
    parser = add_command(inputs, parent, "register", _register_input, "register an input file")
    _file_options(parser)
    parser.add_argument("--cmac", type=hex_bytes, required=True, help="the file's cmac in hex")
    _update_options(add_command(inputs, parent, "update", _update_input, "move an input file"))
    add_command(inputs, parent, "get", _get_input, "show an input file").add_argument("data_id")
    add_command(
        inputs, parent, "from-output", _from_output, "register a written output as an input"
    ).add_argument("data_id")

    outputs = add_group(sub, "output", "output files")
    _file_options(
        add_command(outputs, parent, "register", _register_output, "register an output file")
    )
    _update_options(add_command(outputs, parent, "update", _update_output, "move an output file"))
    add_command(outputs, parent, "get", _get_output, "show an output file").add_argument("data_id")
    add_command(
        outputs, parent, "fusion", _fusion, "register an output owned jointly by several users"
    ).add_argument("owners", nargs="+", metavar="USER")
