"""``teaclave attestation ...``: expected measurements and checking an endpoint."""

from __future__ import annotations

import argparse

from teaclave.attestation.measure import service_measurement
from teaclave.cli.context import Context, Subcommands, add_command, add_group
from teaclave.client import default_policy
from teaclave.client.errors import from_platform_error
from teaclave.config import SERVICES
from teaclave.core.errors import TeaclaveError
from teaclave.rpc.channel import attested_channel


def _measurements(args: argparse.Namespace, ctx: Context) -> None:
    values = {name: service_measurement(name) for name in SERVICES}
    ctx.emit(values, "\n".join(f"{name:<15} {value.hex()}" for name, value in values.items()))


def _verify(args: argparse.Namespace, ctx: Context) -> None:
    try:
        channel, verdict = attested_channel(
            args.address, args.service, policy=default_policy(ctx.allow_simulation)
        )
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


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``attestation`` and its subcommands."""
    group = add_group(sub, "attestation", "attestation evidence")
    add_command(
        group, parent, "measurements", _measurements, "print the expected measurement per service"
    )
    parser = add_command(
        group, parent, "verify", _verify, "verify the attestation evidence of an endpoint"
    )
    parser.add_argument("address", metavar="ADDRESS", help="HOST:PORT")
    parser.add_argument("service", metavar="SERVICE", choices=SERVICES)
