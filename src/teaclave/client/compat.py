"""Apache Teaclave's Python SDK classes, over the typed clients.

A Teaclave program ports by changing its imports and connection setup::

    client = AuthenticationService(("localhost", 7776), simulation_key=key).connect()
    token = client.user_login("admin", password)
    frontend = FrontendService(("localhost", 7777), simulation_key=key).connect()
    frontend.metadata = {"id": "admin", "token": token}

Methods keep Teaclave's names, argument orders and result shapes (``get_task``,
``list_functions`` and ``query_audit_logs`` return dicts). Unlike Teaclave's
SDK, ``get_task_result`` raises :class:`TaskFailed` for a function error.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from teaclave.client.authentication import AuthenticationClient
from teaclave.client.errors import NotFound
from teaclave.client.frontend import FrontendApi


def _to_dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, use_integers_for_enums=True)


class AuthenticationService(AuthenticationClient):
    """Teaclave's ``AuthenticationService``: construct, ``connect()``, ``user_login``…"""

    def connect(self) -> AuthenticationService:
        """The channel is attested on construction; returns ``self``."""
        return self


class FrontendService(FrontendApi):
    """Teaclave's ``FrontendService``: set ``metadata`` after login, then call."""

    def connect(self) -> FrontendService:
        """The channel is attested on construction; returns ``self``."""
        return self

    def list_functions(self, user_id: str) -> dict[str, Any]:
        """``{"registered_functions": [...], "allowed_functions": [...]}`` (empty lists omitted)."""
        return _to_dict(self._list_functions(user_id))

    def get_task(self, task_id: str) -> dict[str, Any]:
        """The GetTask reply as a dict (bytes as base64, enums as numbers)."""
        return _to_dict(self._get_task(task_id))

    def query_audit_logs(self, message: str, limit: int) -> dict[str, Any]:
        """``{"logs": [...]}`` for the audit query ``message``."""
        return _to_dict(self._query_audit_logs(message, limit))

    def get_output_cmac_by_tag(self, task_id: str, tag: str) -> bytes:
        """Wait for the task's result; the cmac of its output ``tag``."""
        tags = self.get_task_outputs(task_id).tags_map
        if tag not in tags:
            raise NotFound(f"task {task_id} has no output {tag!r}")
        return tags[tag]
