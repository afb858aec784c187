"""``teaclave serve``: run the whole platform, or one service, in the foreground."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from teaclave.cli.context import Context, Subcommands, add_command
from teaclave.config import SERVICES, load_config
from teaclave.services.base import simulation_key
from teaclave.services.supervisor import (
    Supervisor,
    configure_logging,
    run_service,
    stop_on_signals,
)


def _serve(args: argparse.Namespace, ctx: Context) -> None:
    config = load_config(args.config)
    if args.data_dir:
        config = config.with_data_dir(args.data_dir)
    json_lines = config.observability.log_format == "json"
    if args.service:
        configure_logging(args.service, json_lines=json_lines)
        stop = threading.Event()
        with stop_on_signals(stop):
            run_service(args.service, config, stop)
        return
    configure_logging("supervisor", json_lines=json_lines)
    attestation = config.attestation
    trusted = attestation.enclave_info or "this installation's own code (no enclave info)"
    ctx.note(
        f"attestation: provider {attestation.provider}, mode {attestation.mode}, "
        f"accepted measurements from {trusted}"
    )
    if attestation.provider == "simulation":
        ctx.note(
            "SIMULATED TEE (no hardware protection). Clients trust it with "
            f"--simulation-key {simulation_key(config.data_path)}"
        )
    Supervisor(config, args.config).run_until_signal()


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``serve``."""
    parser = add_command(
        sub, parent, "serve", _serve, "run the platform (all services, or one) until Ctrl-C"
    )
    parser.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    parser.add_argument("--service", choices=SERVICES, help="run only this service")
    parser.add_argument("--data-dir", type=Path, help="override the config's data directory")
