"""Entry point of the ``teaclave`` command."""

from __future__ import annotations

import argparse
import sys
import traceback

from teaclave.cli import (
    attestation,
    audit,
    crypto,
    data,
    demo,
    deps,
    enclave_info,
    evidence,
    files,
    functions,
    serve,
    tasks,
    tcb,
    users,
)
from teaclave.cli.context import (
    SIMULATION_ENV,
    CliError,
    Context,
    UsageError,
    add_global_options,
)
from teaclave.client import AttestationFailed
from teaclave.config import ConfigError
from teaclave.core.errors import TeaclaveError
from teaclave.services.supervisor import SupervisorError

_COMMAND_MODULES = (
    serve,
    demo,
    crypto,
    users,
    functions,
    data,
    tasks,
    attestation,
    enclave_info,
    evidence,
    files,
    audit,
    tcb,
    deps,
)
_REPORTED = (CliError, TeaclaveError, ConfigError, SupervisorError, OSError, TimeoutError)


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser."""
    parser = argparse.ArgumentParser(
        prog="teaclave", description="Teaclave: confidential function-as-a-service."
    )
    add_global_options(parser, leaf=False)
    leaf = argparse.ArgumentParser(add_help=False)
    add_global_options(leaf, leaf=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.add_commands(sub, leaf)
    return parser


def describe(error: BaseException) -> str:
    """One line for an error."""
    if isinstance(error, AttestationFailed) and "SIMULATED evidence" in error.message:
        return (
            f"{error}; to accept a simulated platform you trust, pass --simulation-key "
            f"FINGERPRINT (or set {SIMULATION_ENV})"
        )
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one ``teaclave`` command; the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args, Context(args))
    except UsageError as exc:
        print(f"teaclave {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except _REPORTED as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"teaclave: error: {describe(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print(
            f"teaclave: internal error: {describe(exc)} (run with --verbose for details)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
