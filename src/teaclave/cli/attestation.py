"""``teaclave attestation ...``: expected measurements and checking an endpoint."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from teaclave.attestation import ratls
from teaclave.attestation.evidence import (
    SIMULATION,
    AttestationError,
    Evidence,
    platform_fingerprint,
)
from teaclave.attestation.measure import service_measurement, source_digest
from teaclave.attestation.peer import verify_peer
from teaclave.cli.context import (
    CliError,
    Context,
    Subcommands,
    add_command,
    add_group,
    collateral_cache,
)
from teaclave.client.errors import from_platform_error
from teaclave.config import SERVICES, load_config
from teaclave.core.errors import TeaclaveError
from teaclave.rpc.channel import attested_channel, fetch_certificate
from teaclave.services.base import simulation_key
from teaclave.transport.appraiser import appraiser


def _measurements(args: argparse.Namespace, ctx: Context) -> None:
    if args.source is not None and not (args.source / "__init__.py").is_file():
        raise CliError(f"{args.source} is not a teaclave package directory (no __init__.py)")
    digest = None if args.source is None else source_digest(args.source)
    values = {name: service_measurement(name, digest) for name in SERVICES}
    ctx.emit(values, "\n".join(f"{name:<15} {value.hex()}" for name, value in values.items()))


def _simulation_key(args: argparse.Namespace, ctx: Context) -> None:
    config = load_config(args.config)
    data_dir = args.data_dir or config.data_path
    if not (data_dir / "simulation").is_dir():
        raise CliError(f"{data_dir} holds no simulated platform (has the platform run there?)")
    key = simulation_key(data_dir)
    ctx.emit({"simulation_key": key}, key)


def _verify(args: argparse.Namespace, ctx: Context) -> None:
    try:
        channel, verdict = attested_channel(args.address, args.service, policy=ctx.policy())
    except TeaclaveError as exc:
        raise from_platform_error(exc) from None
    channel.close()
    ctx.emit(
        {
            "service": verdict.service,
            "tee": verdict.tee,
            "simulated": verdict.simulated,
            "measurement": verdict.measurement,
        },
        f"verified {verdict.describe()}",
    )


def _evidence_lines(found: ratls.CertificateEvidence, now: datetime) -> list[str]:
    """What the certificate's evidence says, checked as far as this machine can."""
    lines = [f"format: {found.format} RA-TLS", f"binding: {found.binding}"]
    lines += [f"claim {name}: {value!r}" for name, value in found.claims.items()]
    if found.tee == SIMULATION:
        evidence = Evidence.from_bytes(found.evidence)
        platform = platform_fingerprint(evidence.platform_key).hex()
        lines += [
            "TEE: SIMULATED (no hardware protection)",
            f"service: {evidence.service}",
            f"measurement: {evidence.measurement.hex()}",
            f"signed by: simulated platform key {platform}",
        ]
        return lines
    return lines + appraiser(collateral_cache())(found, now).describe()


def _attest(args: argparse.Namespace, ctx: Context) -> None:
    cert = fetch_certificate(args.address, timeout=10.0)
    der = cert.public_bytes(serialization.Encoding.DER)
    now = datetime.now(UTC)
    try:
        found = ratls.extract(der)
    except ratls.RatlsFormatError as exc:
        raise CliError(f"{args.address}: {exc}") from None
    lines = [f"endpoint: {args.address}", f"TEE: {found.tee}", *_evidence_lines(found, now)]
    try:
        verdict = verify_peer(der, services=frozenset(SERVICES), policy=ctx.policy(), now=now)
        outcome = f"ACCEPTED by your policy: {verdict.describe()}"
    except AttestationError as exc:
        outcome = f"REJECTED by your policy: {exc.reason}"
    lines.append(outcome)
    ctx.emit({"endpoint": args.address, "lines": lines, "verdict": outcome}, "\n".join(lines))
    if outcome.startswith("REJECTED"):
        raise SystemExit(1)


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``attestation`` and its subcommands."""
    group = add_group(sub, "attestation", "attestation evidence")
    parser = add_command(
        group, parent, "measurements", _measurements, "print the expected measurement per service"
    )
    parser.add_argument(
        "--source",
        type=Path,
        metavar="DIR",
        help="of the teaclave package in DIR (e.g. an unpacked release), not the installed one",
    )
    parser = add_command(
        group,
        parent,
        "simulation-key",
        _simulation_key,
        "print the fingerprint clients pin to trust this machine's simulated platform",
    )
    parser.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    parser.add_argument("--data-dir", type=Path, help="override the config's data directory")
    parser = add_command(
        group, parent, "verify", _verify, "verify the attestation evidence of an endpoint"
    )
    parser.add_argument("address", metavar="ADDRESS", help="HOST:PORT")
    parser.add_argument("service", metavar="SERVICE", choices=SERVICES)
    parser = add_command(
        sub, parent, "attest", _attest, "show and check the attestation evidence of an endpoint"
    )
    parser.add_argument("address", metavar="HOST:PORT")
