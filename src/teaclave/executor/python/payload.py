"""A Python function's payload and arguments: checks and the argv of reference §6.2."""

from __future__ import annotations

import ast
import json
import re

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


_PYTHON2 = (
    ("Missing parentheses in call to 'print'", "", "the print statement"),
    ("Missing parentheses in call to 'exec'", "", "the exec statement"),
    ("multiple exception types must be parenthesized", "", "'except E, name:'"),
    ("leading zeros in decimal integer literals", "", "an octal literal without 0o"),
    ("Function parameters cannot be parenthesized", "", "tuple parameters"),
    ("Lambda expression parameters cannot be parenthesized", "", "tuple parameters"),
    ("invalid decimal literal", r"\b\d+[lL]\b", "a long integer literal"),
    ("invalid syntax", r"`", "backquotes"),
    ("invalid syntax", r"<>", "the <> operator"),
    ("invalid syntax", r"\b[uU][rR]['\"]", "a ur'' string"),
    ("invalid syntax", r"^\s*raise\s[^,]+,", "'raise E, value'"),
)
"""Python 3's message for a Python 2 construct, what the line holds where the parser
stopped (if the message alone does not tell), and the construct."""


def _python2(exc: SyntaxError) -> str | None:
    """The Python 2 construct that ``exc`` is about, if it is one."""
    line, at = exc.text or "", (exc.offset or 0) - 1
    for message, pattern, construct in _PYTHON2:
        if not exc.msg.startswith(message):
            continue
        if not pattern or any(m.start() <= at < m.end() for m in re.finditer(pattern, line)):
            return construct
    return None


def check(payload: bytes) -> None:
    """INVALID_ARGUMENT unless ``payload`` compiles and defines ``entrypoint`` at top level.

    The code is compiled, never run.
    """
    text = source(payload)
    try:
        compile(text, FILENAME, "exec", dont_inherit=True)
        tree = ast.parse(text, FILENAME)
    except SyntaxError as exc:
        construct = _python2(exc)
        hint = f"Python 2 syntax is not supported ({construct}): " if construct else ""
        message = f"invalid function payload: {hint}{exc.msg} (line {exc.lineno})"
        raise invalid_argument(message) from None
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
