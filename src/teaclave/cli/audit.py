"""``teaclave audit ...``: export the platform's audit log, verify a copy offline."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from teaclave.attestation.evidence import AttestationError, AttestationPolicy
from teaclave.attestation.peer import verify_peer
from teaclave.cli.context import CliError, Context, Subcommands, add_command, add_group
from teaclave.config import load_config
from teaclave.core import auditlog
from teaclave.services.management.audit import export_lines
from teaclave.services.storage import DB_FILE
from teaclave.storage.sealing import load_or_create_sealing_key
from teaclave.storage.sqlite import SqliteStore

SIGNER = "management"
"""The service whose attested key signs checkpoints."""


def attested(policy: AttestationPolicy) -> auditlog.Trust:
    """Trust a checkpoint whose certificate's evidence ``policy`` accepts for management,
    fresh at the checkpoint's time."""

    def trust(certificate: bytes, time: int) -> str | None:
        der = x509.load_pem_x509_certificate(certificate).public_bytes(serialization.Encoding.DER)
        when = datetime.fromtimestamp(time / 1_000_000, UTC)
        try:
            verify_peer(der, services=frozenset({SIGNER}), policy=policy, now=when)
        except AttestationError as exc:
            return exc.reason
        return None

    return trust


def _export(args: argparse.Namespace, ctx: Context) -> None:
    config = load_config(args.config)
    data = args.data_dir or config.data_path
    if not (data / DB_FILE).is_file():
        raise CliError(f"{data} holds no platform database (has the platform run there?)")
    store = SqliteStore(data / DB_FILE, load_or_create_sealing_key(data))
    counts = {"entries": 0, "checkpoints": 0}
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            for line in export_lines(store):
                kind = auditlog.parse_line(line)
                counts["entries" if isinstance(kind, auditlog.Record) else "checkpoints"] += 1
                out.write(line + b"\n")
    finally:
        store.close()
    ctx.emit(
        {"file": str(args.out), **counts},
        f"{args.out}: {counts['entries']} entries, {counts['checkpoints']} checkpoints",
    )


def _verify(args: argparse.Namespace, ctx: Context) -> None:
    try:
        with args.log.open("rb") as lines:
            records, checkpoints = auditlog.parse_log(lines)
    except auditlog.LogFormatError as exc:
        raise CliError(f"{args.log}: {exc}") from None
    try:
        trust = (
            auditlog.pinned([path.read_bytes() for path in args.trust])
            if args.trust
            else attested(ctx.policy())
        )
    except ValueError as exc:
        raise CliError(f"--trust: not a PEM certificate ({exc})") from None
    report = auditlog.verify_chain(records, checkpoints, trust)
    ctx.emit(
        {
            "valid": report.valid,
            "problem": report.problem,
            "entries": report.entries,
            "checkpoints": report.checkpoints,
            "signed_through": report.signed_through,
        },
        f"{args.log}: {report.summary()}",
    )
    if not report.valid:
        raise SystemExit(1)


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``audit`` and its subcommands."""
    group = add_group(sub, "audit", "the platform's tamper-evident audit log")
    parser = add_command(
        group,
        parent,
        "export",
        _export,
        "copy the audit log (entries and signed checkpoints) to a JSON-lines file; "
        "run on the platform's machine",
    )
    parser.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    parser.add_argument("--data-dir", type=Path, help="override the config's data directory")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE")
    parser = add_command(
        group,
        parent,
        "verify",
        _verify,
        "check a copy of the audit log: the hash chain and the signed checkpoints; "
        "names any edited, dropped or reordered entry (exit status 1)",
    )
    parser.add_argument("log", type=Path, metavar="FILE")
    parser.add_argument(
        "--trust",
        type=Path,
        action="append",
        default=[],
        metavar="CERT.pem",
        help="accept checkpoints signed by this certificate's key (repeatable); default: "
        "those whose attestation evidence your policy accepts for the management service "
        "(--simulation-key, --enclave-info, --auditor)",
    )
