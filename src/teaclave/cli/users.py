"""``teaclave user ...``: accounts on the authentication API."""

from __future__ import annotations

import argparse

from teaclave.cli.context import Context, Subcommands, add_command, add_group, read_password

ROLES = ("PlatformAdmin", "FunctionOwner", "DataOwnerManager", "DataOwner")


def _login(args: argparse.Namespace, ctx: Context) -> None:
    password = read_password(args)
    with ctx.authentication(login=False) as auth:
        token = auth.user_login(args.user_id, password)
    ctx.save_session(args.user_id, token)
    ctx.emit(
        {"user_id": args.user_id, "session": str(ctx.session_path)},
        f"Logged in as {args.user_id} (session saved to {ctx.session_path})",
    )


def _register(args: argparse.Namespace, ctx: Context) -> None:
    password = read_password(args, f"Password for {args.user_id}: ")
    with ctx.authentication() as auth:
        auth.user_register(args.user_id, password, args.role, args.attribute)
    ctx.emit({"user_id": args.user_id}, f"Registered {args.user_id} as {args.role}")


def _update(args: argparse.Namespace, ctx: Context) -> None:
    password = read_password(args, f"New password for {args.user_id}: ")
    with ctx.authentication() as auth:
        auth.user_update(args.user_id, password, args.role, args.attribute)
    ctx.emit({"user_id": args.user_id}, f"Updated {args.user_id}")


def _passwd(args: argparse.Namespace, ctx: Context) -> None:
    password = read_password(args, "New password: ")
    with ctx.authentication() as auth:
        auth.user_change_password(password)
    ctx.emit({"user_id": auth.user_id}, "Password changed")


def _reset(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.authentication() as auth:
        password = auth.reset_user_password(args.user_id)
    ctx.emit({"user_id": args.user_id, "password": password}, password)


def _delete(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.authentication() as auth:
        auth.delete_user(args.user_id)
    ctx.emit({"user_id": args.user_id}, f"Deleted {args.user_id}")


def _list(args: argparse.Namespace, ctx: Context) -> None:
    with ctx.authentication() as auth:
        users = auth.list_users(args.id or auth.user_id)
    ctx.emit(users, "\n".join(users) or "(no users)")


def _password_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--password", help="the password (default: prompt, or a line of stdin if piped)"
    )
    return parser


def _user_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user_id")
    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--attribute", default="", help="the DataOwner/DataOwnerManager attribute")
    _password_option(parser)


def add_commands(sub: Subcommands, parent: argparse.ArgumentParser) -> None:
    """Register ``user`` and its subcommands."""
    group = add_group(sub, "user", "user accounts")
    _password_option(
        add_command(group, parent, "login", _login, "log in and save the session")
    ).add_argument("user_id")
    _user_options(add_command(group, parent, "register", _register, "create a user"))
    _user_options(
        add_command(group, parent, "update", _update, "replace a user's password and role")
    )
    _password_option(add_command(group, parent, "passwd", _passwd, "change your own password"))
    add_command(
        group, parent, "reset", _reset, "reset a managed user's password (prints the new one)"
    ).add_argument("user_id")
    add_command(group, parent, "delete", _delete, "delete a managed user").add_argument("user_id")
    add_command(group, parent, "list", _list, "list the users you manage").add_argument(
        "id", nargs="?", help="the attribute you manage (default: your user id)"
    )
