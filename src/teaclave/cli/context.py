"""What every command shares: global options, the login session, output formatting."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

from teaclave.attestation.evidence import AttestationPolicy
from teaclave.client import AuthenticationClient, FrontendClient, default_policy
from teaclave.config import Endpoints
from teaclave.transport.appraiser import appraiser
from teaclave.transport.collateral import CollateralCache

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler: TypeAlias = "Callable[[argparse.Namespace, Context], None]"

SIMULATION_ENV = "TEACLAVE_SIMULATION_KEY"
DEFAULT_SESSION = Path("~/.config/teaclave/session.json")
DEFAULT_COLLATERAL = Path("~/.cache/teaclave/collateral")
"""Where the CLI caches attestation collateral (env TEACLAVE_COLLATERAL_DIR; refreshed from
TEACLAVE_PCCS_URL / TEACLAVE_KDS_URL when set)."""


def collateral_cache() -> CollateralCache:
    """The CLI's attestation collateral cache (see :data:`DEFAULT_COLLATERAL`)."""
    directory = os.environ.get("TEACLAVE_COLLATERAL_DIR", str(DEFAULT_COLLATERAL))
    return CollateralCache(
        Path(directory).expanduser(),
        pccs_url=os.environ.get("TEACLAVE_PCCS_URL", ""),
        kds_url=os.environ.get("TEACLAVE_KDS_URL", ""),
    )


class CliError(Exception):
    """A failure to report as one line (exit status 1)."""


class UsageError(CliError):
    """Bad command-line arguments (exit status 2, like argparse's own errors)."""


def add_global_options(parser: argparse.ArgumentParser, *, leaf: bool) -> None:
    """The options every command accepts (on a leaf parser they override the top-level ones)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if leaf else value

    def shown(text: str) -> str:
        """Help text naming the default (only where there is one: not on leaf parsers)."""
        return (
            text
            if not leaf
            else text.replace("default: %(default)s, ", "").replace(" (default: %(default)s)", "")
        )

    endpoints = Endpoints()
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--auth-address",
        metavar="HOST:PORT",
        default=default(os.environ.get("TEACLAVE_AUTH_ADDRESS", endpoints.authentication_api)),
        help=shown("authentication API (default: %(default)s, env TEACLAVE_AUTH_ADDRESS)"),
    )
    group.add_argument(
        "--frontend-address",
        metavar="HOST:PORT",
        default=default(os.environ.get("TEACLAVE_FRONTEND_ADDRESS", endpoints.frontend_api)),
        help=shown("frontend API (default: %(default)s, env TEACLAVE_FRONTEND_ADDRESS)"),
    )
    group.add_argument(
        "--simulation-key",
        metavar="FINGERPRINT",
        default=default(os.environ.get(SIMULATION_ENV)),
        help="accept SIMULATED attestation (no hardware protection) from the simulated "
        f"platform with this key fingerprint (env {SIMULATION_ENV}; "
        "`teaclave attestation simulation-key` prints it)",
    )
    group.add_argument(
        "--enclave-info",
        metavar="FILE",
        default=default(os.environ.get("TEACLAVE_ENCLAVE_INFO")),
        help="accept the measurements of this auditor-signed enclave info (env "
        "TEACLAVE_ENCLAVE_INFO; default: those of this installation's code)",
    )
    group.add_argument(
        "--auditor",
        metavar="NAME=KEY.pem",
        action="append",
        default=default([]),
        help="an auditor's public key, for --enclave-info (repeatable)",
    )
    group.add_argument(
        "--auditor-threshold",
        metavar="N",
        type=int,
        default=default(1),
        help=shown("how many auditors must have signed the enclave info (default: %(default)s)"),
    )
    group.add_argument(
        "--session",
        metavar="PATH",
        type=Path,
        default=default(DEFAULT_SESSION),
        help=shown("login session file (default: %(default)s)"),
    )
    group.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON for scripts"
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="show tracebacks on errors",
    )


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data (bytes as lowercase hex)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def human(value: Any) -> str:
    """``value`` as readable ``key: value`` lines."""
    data = plain(value)
    if isinstance(data, dict):
        return "\n".join(f"{key}: {_inline(item)}" for key, item in data.items())
    if isinstance(data, list):
        return "\n".join(_inline(item) for item in data)
    return str(data)


def _inline(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_inline(v) for v in value) or "-"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_inline(v)}" for k, v in value.items()) + "}"
    if value == "":
        return "-"
    return str(value)


class Context:
    """The parsed global options of one invocation, and helpers for commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json: bool = args.json
        self.simulation_key: str | None = args.simulation_key
        self.session_path: Path = Path(args.session).expanduser()

    def policy(self) -> AttestationPolicy:
        """What to accept of the platform: --simulation-key, --enclave-info, --auditor."""
        return default_policy(
            self.simulation_key,
            enclave_info=self.args.enclave_info,
            auditors=self.args.auditor,
            threshold=self.args.auditor_threshold,
            appraise=appraiser(collateral_cache()),
        )

    def emit(self, data: Any, text: str | None = None) -> None:
        """Print ``data`` (JSON with ``--json``, else ``text`` or a readable rendering)."""
        if self.json:
            print(json.dumps(plain(data), indent=2, sort_keys=True))
        else:
            print(human(data) if text is None else text)

    def note(self, text: str) -> None:
        """A progress or warning line for humans (stderr, so JSON output stays clean)."""
        print(text, file=sys.stderr)

    def save_session(self, user_id: str, token: str) -> None:
        """Remember the login (file mode 0600)."""
        path = self.session_path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"id": user_id, "token": token}, f)

    def session(self) -> tuple[str, str]:
        """The saved ``(user id, token)``."""
        try:
            data = json.loads(self.session_path.read_text(encoding="utf-8"))
            return str(data["id"]), str(data["token"])
        except FileNotFoundError:
            raise CliError("not logged in: run `teaclave user login USER_ID` first") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CliError(f"unreadable session file {self.session_path}: {exc}") from None

    def authentication(self, *, login: bool = True) -> AuthenticationClient:
        """A client of the authentication API (as the session's user when ``login``)."""
        user_id, token = self.session() if login else ("", "")
        return AuthenticationClient(self.args.auth_address, user_id, token, policy=self.policy())

    def frontend(self) -> FrontendClient:
        """A client of the frontend API as the session's user."""
        user_id, token = self.session()
        return FrontendClient(self.args.frontend_address, user_id, token, policy=self.policy())


def read_password(args: argparse.Namespace, prompt: str = "Password: ") -> str:
    """``--password``, else a prompt on a terminal, else one line of stdin; never empty."""
    if args.password is not None:
        password = str(args.password)
    elif sys.stdin.isatty():
        import getpass

        password = getpass.getpass(prompt)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise UsageError("empty password: pass --password, type it at the prompt or pipe it")
    return password


def hex_bytes(text: str) -> bytes:
    """An argparse type: hex digits to bytes."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None


def key_value(text: str) -> tuple[str, str]:
    """An argparse type: ``KEY=VALUE``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"want KEY=VALUE, got {text!r}")
    return key, value


def add_group(sub: Subcommands, name: str, help_text: str) -> Subcommands:
    """A command group such as ``teaclave user``."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def add_command(
    group: Subcommands,
    parent: argparse.ArgumentParser,
    name: str,
    handler: Handler,
    help_text: str,
) -> argparse.ArgumentParser:
    """A command (with the global options) that runs ``handler``."""
    parser = group.add_parser(name, parents=[parent], help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser
