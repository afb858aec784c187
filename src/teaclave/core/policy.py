"""The role x API matrix (reference §4.1-4.2): which roles may call which public API.

PlatformAdmin may call every API (even unknown names); ``Invalid`` none;
other roles exactly the APIs listed for their kind.
"""

from __future__ import annotations

import re

from teaclave.core.roles import Role, RoleKind

_FUNCTION_OWNER = frozenset({RoleKind.FUNCTION_OWNER})
_DATA_OWNERS = frozenset({RoleKind.DATA_OWNER_MANAGER, RoleKind.DATA_OWNER})
_BOTH = _FUNCTION_OWNER | _DATA_OWNERS
_ADMIN_ONLY: frozenset[RoleKind] = frozenset()

POLICY: dict[str, frozenset[RoleKind]] = {
    "register_function": _FUNCTION_OWNER,
    "update_function": _FUNCTION_OWNER,
    "delete_function": _FUNCTION_OWNER,
    "disable_function": _FUNCTION_OWNER,
    "get_function": _BOTH,
    "list_functions": _BOTH,
    "get_function_usage_stats": _BOTH,
    "register_input_file": _DATA_OWNERS,
    "register_output_file": _DATA_OWNERS,
    "update_input_file": _DATA_OWNERS,
    "update_output_file": _DATA_OWNERS,
    "register_fusion_output": _DATA_OWNERS,
    "register_input_from_output": _DATA_OWNERS,
    "get_output_file": _DATA_OWNERS,
    "get_input_file": _DATA_OWNERS,
    "create_task": _DATA_OWNERS,
    "get_task": _DATA_OWNERS,
    "assign_data": _DATA_OWNERS,
    "approve_task": _DATA_OWNERS,
    "invoke_task": _DATA_OWNERS,
    "cancel_task": _DATA_OWNERS,
    "query_audit_logs": _ADMIN_ONLY,
}
"""API name (snake_case RPC name) → the non-admin role kinds allowed to call it."""


def authorize_api(role: Role, api: str) -> bool:
    """Whether ``role`` may call ``api``."""
    if role.is_admin:
        return True
    return role.kind in POLICY.get(api, _ADMIN_ONLY)


SAFE_TO_REPEAT: frozenset[str] = frozenset(
    {
        "get_function",
        "list_functions",
        "get_function_usage_stats",
        "get_output_file",
        "get_input_file",
        "get_task",
        "query_audit_logs",
        "user_login",
        "list_users",
    }
)
"""Public API calls that change nothing: safe to send again after a lost reply."""


def api_name(method: str) -> str:
    """The snake_case API name of a method: ``RegisterInputFile`` → ``register_input_file``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()
