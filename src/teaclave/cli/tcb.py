"""``teaclave tcb``: what each service loads (modules, native code), checked against the
native-code manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from teaclave.assurance import tcb
from teaclave.cli.context import CliError, Context, Subcommands, add_command
from teaclave.config import SERVICES


def _tcb(args: argparse.Namespace, ctx: Context) -> None:
    try:
        manifest = args.manifest or tcb.default_manifest()
        allowed = tcb.load_manifest(manifest)
        reports = tcb.inventories([args.service] if args.service else SERVICES)
    except tcb.TcbError as exc:
        raise CliError(str(exc)) from None
    unlisted = {r.service: tcb.unlisted_native(r, allowed) for r in reports}
    unlisted = {service: names for service, names in unlisted.items() if names}
    verdict = f"native code checked against {manifest}: " + (
        "; ".join(f"{s} loads unlisted {', '.join(n)}" for s, n in unlisted.items())
        if unlisted
        else "every native distribution is listed"
    )
    ctx.emit(
        {
            "services": [r.as_dict() for r in reports],
            "manifest": str(manifest),
            "unlisted": unlisted,
        },
        "\n\n".join(tcb.text(r) for r in reports) + "\n\n" + _totals(reports) + "\n" + verdict,
    )
    if unlisted:
        raise CliError(f"native code not in {manifest.name}: {unlisted}")


def _totals(reports: list[tcb.Inventory]) -> str:
    lines = ["service         modules  teaclave-lines  3rd-party-lines  native-files  native-MiB"]
    for r in reports:
        t = r.totals()
        lines.append(
            f"{r.service:<15} {t['modules']:>7}  {t['teaclave_lines']:>14}  "
            f"{t['third_party_lines']:>15}  {t['native_files']:>12}  "
            f"{t['native_bytes'] / 2**20:>10.1f}"
        )
    return "\n".join(lines)


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``tcb``."""
    parser = add_command(
        sub, parent, "tcb", _tcb, "list what each service loads: modules, native code, totals"
    )
    parser.add_argument("--service", choices=SERVICES, help="only this service")
    parser.add_argument(
        "--manifest",
        type=Path,
        metavar="FILE",
        help=f"the allowed native code (default: the {tcb.MANIFEST} shipped with teaclave)",
    )
