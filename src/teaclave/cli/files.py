"""``teaclave file serve``: a local HTTP file server (GET and PUT) for tests and demos."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from teaclave.cli.context import Context, Subcommands, add_command, add_group
from teaclave.transport.file_server import FileServer


def _serve(args: argparse.Namespace, ctx: Context) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with FileServer(args.dir, args.host, args.port) as server:
        ctx.note(f"serving {server.root} at {server.url}/ (GET and PUT; Ctrl-C stops)")
        server.serve_forever()


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``file serve``."""
    group = add_group(sub, "file", "serve files over HTTP for tasks to read and write")
    parser = add_command(
        group,
        parent,
        "serve",
        _serve,
        "serve DIR over HTTP: GET files, PUT new files (never overwrites; no listings)",
    )
    parser.add_argument("dir", metavar="DIR", type=Path, help="the directory to serve")
    parser.add_argument("--port", type=int, default=6789, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
