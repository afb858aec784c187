"""``teaclave deps map|sbom|audit``: the dependency world, its SBOM and its audit: of the
project's ``uv.lock`` (``--lock``, or found in a checkout), else of the installed
distributions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from teaclave.assurance import advisories, deps, sbom
from teaclave.assurance.environment import installed_lock
from teaclave.assurance.lock import Lock, LockError, load_lock, project_lock
from teaclave.cli.context import CliError, Context, Subcommands, add_command, add_group


def _lock(args: argparse.Namespace, ctx: Context) -> Lock:
    try:
        if args.lock is not None:
            return load_lock(args.lock)
        lock = None if args.installed else project_lock()
        if lock is None:
            lock = installed_lock()
    except LockError as exc:
        raise CliError(str(exc)) from None
    ctx.note(f"dependencies: {lock.origin}")
    return lock


def _write(path: Path, text: str, ctx: Context, what: str) -> None:
    path.write_text(text, encoding="utf-8")
    ctx.emit({"file": str(path)}, f"{what} written to {path}")


def _map(args: argparse.Namespace, ctx: Context) -> None:
    lock = _lock(args, ctx)
    world = deps.dependency_world(lock)
    if ctx.json:
        ctx.emit([info.as_dict() for info in world])
        return
    if args.format == "html":
        if args.out is None:
            raise CliError("--format html needs --out FILE")
        _write(args.out, deps.html_page(lock, world), ctx, "dependency map")
    elif args.out is not None:
        _write(args.out, deps.text_tree(lock, world) + "\n", ctx, "dependency map")
    else:
        print(deps.text_tree(lock, world))


def _sbom(args: argparse.Namespace, ctx: Context) -> None:
    document = json.dumps(sbom.sbom(_lock(args, ctx)), indent=2) + "\n"
    if args.out is None:
        print(document, end="")
    else:
        _write(args.out, document, ctx, f"CycloneDX {sbom.SPEC_VERSION} SBOM")


def _audit(args: argparse.Namespace, ctx: Context) -> None:
    lock = _lock(args, ctx)
    try:
        source: advisories.Source = (
            advisories.load_snapshot(args.advisories)
            if args.advisories
            else advisories.OsvService(args.osv_url)
        )
        report = advisories.audit(lock, source)
    except advisories.AdvisoryError as exc:
        raise CliError(str(exc)) from None
    ctx.emit(report.as_dict(), report.text())
    if not report.passed:
        raise CliError(
            f"audit failed: {len(report.vulnerable)} packages with applicable advisories, "
            f"{len(report.unchecked)} could not be checked"
        )


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``deps`` and its subcommands."""
    group = add_group(
        sub, "deps", "the dependencies (locked or installed): map, SBOM, vulnerability audit"
    )
    parser = add_command(
        group, parent, "map", _map, "draw the dependency world (reach, licence, native code)"
    )
    _add_source(parser)
    parser.add_argument("--format", choices=("text", "html"), default="text")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write to FILE, not stdout")
    parser = add_command(group, parent, "sbom", _sbom, "write a CycloneDX JSON SBOM")
    _add_source(parser)
    parser.add_argument("--out", type=Path, metavar="FILE", help="write to FILE, not stdout")
    parser = add_command(
        group, parent, "audit", _audit, "check the pinned versions against advisories (strict)"
    )
    _add_source(parser)
    parser.add_argument(
        "--advisories",
        type=Path,
        metavar="DIR",
        help="an offline OSV snapshot (e.g. the PyPA advisory database); default: the OSV service",
    )
    parser.add_argument(
        "--osv-url",
        default=advisories.OSV_URL,
        metavar="URL",
        help="the OSV service (default: %(default)s)",
    )


def _add_source(parser: argparse.ArgumentParser) -> None:
    """``--lock FILE`` or ``--installed``: where the pinned versions come from."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--lock",
        type=Path,
        metavar="FILE",
        help="a uv lock file (default: the project's uv.lock in the working directory, "
        "a parent of it or the checkout teaclave runs from; without one, --installed)",
    )
    source.add_argument(
        "--installed",
        action="store_true",
        help="the distributions installed in this Python environment, not a lock",
    )
