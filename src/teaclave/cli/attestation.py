"""``teaclave attestation ...``: expected measurements and checking an endpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from teaclave.attestation.measure import service_measurement
from teaclave.cli.context import CliError, Context, Subcommands, add_command, add_group
from teaclave.client import default_policy
from teaclave.client.errors import from_platform_error
from teaclave.config import SERVICES, load_config
from teaclave.core.errors import TeaclaveError
from teaclave.rpc.channel import attested_channel
from teaclave.services.base import simulation_key


def _measurements(args: argparse.Namespace, ctx: Context) -> None:
    values = {name: service_measurement(name) for name in SERVICES}
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
        channel, verdict = attested_channel(
            args.address, args.service, policy=default_policy(ctx.simulation_key)
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
