"""A Python function's payload and arguments: checks and the argv of reference §6.2."""

from __future__ import annotations

import ast
import json

from teaclave.core.errors import invalid_argument

ENTRYPOINT = "entrypoint"
FILENAME = "<function>"
"""The file name the payload's code (and tracebacks) carry."""


def source(payload: bytes) -> str:
    """The payload as text; INVALID_ARGUMENT if it is empty or not UTF-8."""
    if not payload:
        raise invalid_argument("invalid function payload: empty")
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise invalid_argument("invalid function payload: not UTF-8") from None


def _defines_entrypoint(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == ENTRYPOINT:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == ENTRYPOINT for t in targets):
            return True
    return False


def check(payload: bytes) -> None:
    """INVALID_ARGUMENT unless ``payload`` compiles and defines ``entrypoint`` at top level.

    The code is compiled, never run.
    """
    text = source(payload)
    try:
        compile(text, FILENAME, "exec", dont_inherit=True)
        tree = ast.parse(text, FILENAME)
    except SyntaxError as exc:
        raise invalid_argument(f"invalid function payload: {exc.msg} (line {exc.lineno})") from None
    except ValueError as exc:  # e.g. NUL bytes
        raise invalid_argument(f"invalid function payload: {exc}") from None
    if not _defines_entrypoint(tree):
        raise invalid_argument(f"invalid function payload: no top-level {ENTRYPOINT!r}")


def flatten(arguments: str) -> list[str]:
    """``[k1, v1, k2, v2, …]`` with keys sorted: strings verbatim, other values as compact JSON."""
    try:
        raw = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        raise invalid_argument("Cannot deserialize arguments: not valid JSON") from None
    if not isinstance(raw, dict):
        raise invalid_argument("Cannot deserialize arguments: not a JSON object")
    argv: list[str] = []
    for key in sorted(raw):
        value = raw[key]
        text = (
            value
            if isinstance(value, str)
            else json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        )
        argv += [key, text]
    return argv
