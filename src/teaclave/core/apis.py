"""Public API names (snake_case RPC names) and which calls are safe to send again.

Who may call what is :mod:`teaclave.core.access`.
"""

from __future__ import annotations

import re

SAFE_TO_REPEAT: frozenset[str] = frozenset(
    {
        "get_function",
        "list_functions",
        "get_function_usage_stats",
        "get_output_file",
        "get_input_file",
        "get_task",
        "wait_task",
        "query_audit_logs",
        "user_login",
        "list_users",
    }
)
"""Public API calls that change nothing: safe to send again after a lost reply."""

WAITS_SECS: dict[str, float] = {"wait_task": 60.0}
"""Public API calls that may wait for something, and the longest they wait, in seconds."""


def api_name(method: str) -> str:
    """The snake_case API name of a method: ``RegisterInputFile`` → ``register_input_file``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()
