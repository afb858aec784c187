"""``teaclave enclave-info ...``: auditors make keys, sign a release's measurements, verify."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

import teaclave
from teaclave.attestation import enclave_info
from teaclave.attestation.measure import local_measurements
from teaclave.cli.context import CliError, Context, Subcommands, add_command, add_group
from teaclave.config import SERVICES
from teaclave.core.errors import TeaclaveError
from teaclave.rpc.trust import auditor_keys

_KEY_TYPES: dict[str, Callable[[], enclave_info.SigningKey]] = {
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
}


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _keygen(args: argparse.Namespace, ctx: Context) -> None:
    key = _KEY_TYPES[args.type]()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_path = args.out.with_suffix(".pub.pem")
    _write(args.out, private, 0o600)
    _write(public_path, public, 0o644)
    ctx.emit(
        {"private_key": str(args.out), "public_key": str(public_path)},
        f"private key: {args.out} (keep it secret)\npublic key: {public_path} (give it out)",
    )


def _sign(args: argparse.Namespace, ctx: Context) -> None:
    try:
        key = enclave_info.load_private_key(args.key.read_bytes())
    except ValueError as exc:
        raise CliError(f"{args.key}: {exc}") from None
    if args.input:
        try:
            info, signatures = enclave_info.decode(args.input.read_bytes())
        except enclave_info.EnclaveInfoError as exc:
            raise CliError(f"{args.input}: {exc}") from None
    else:
        info, signatures = enclave_info.EnclaveInfo(local_measurements(SERVICES), args.release), []
    signatures.append(enclave_info.sign(info, key, args.signer))
    args.out.write_bytes(enclave_info.encode(info, signatures))
    signers = ", ".join(s.signer for s in signatures)
    ctx.emit(
        {"enclave_info": str(args.out), "release": info.release, "signers": signers},
        f"{args.out}: release {info.release}, signed by {signers}",
    )


def _verify(args: argparse.Namespace, ctx: Context) -> None:
    try:
        info = enclave_info.verify(
            args.document.read_bytes(),
            auditors=auditor_keys(args.auditor),
            threshold=args.auditor_threshold,
        )
    except (enclave_info.EnclaveInfoError, ValueError, TeaclaveError) as exc:
        raise CliError(f"{args.document}: {exc}") from None
    measurements = {name: sorted(m.hex() for m in ms) for name, ms in info.measurements.items()}
    text = [f"{args.document}: valid, release {info.release}"]
    text += [f"{name:<15} {', '.join(values)}" for name, values in measurements.items()]
    ctx.emit({"release": info.release, "measurements": measurements}, "\n".join(text))


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``enclave-info`` and its subcommands."""
    group = add_group(sub, "enclave-info", "auditor-signed lists of accepted measurements")
    parser = add_command(group, parent, "keygen", _keygen, "make an auditor's key pair")
    parser.add_argument("--out", type=Path, required=True, metavar="KEY.pem")
    parser.add_argument("--type", choices=sorted(_KEY_TYPES), default="ed25519")
    parser = add_command(
        group,
        parent,
        "sign",
        _sign,
        "sign this installation's measurements (or add a signature to --in)",
    )
    parser.add_argument("--key", type=Path, required=True, metavar="KEY.pem")
    parser.add_argument("--signer", required=True, metavar="NAME")
    parser.add_argument("--in", dest="input", type=Path, metavar="DOC", help="add to this document")
    parser.add_argument("--out", type=Path, required=True, metavar="DOC")
    parser.add_argument("--release", default=teaclave.__version__)
    parser = add_command(
        group,
        parent,
        "verify",
        _verify,
        "check an enclave info's signatures (with --auditor and --auditor-threshold)",
    )
    parser.add_argument("document", type=Path, metavar="DOC")
