"""The access-control servicer: answers AuthorizeApi from :mod:`teaclave.core.access`."""

from __future__ import annotations

import grpc

from teaclave.core.access import authorize_api
from teaclave.core.roles import Role
from teaclave.proto import teaclave_access_control_service_pb2 as acs
from teaclave.proto import teaclave_access_control_service_pb2_grpc as acs_grpc


class AccessControlServicer(acs_grpc.TeaclaveAccessControlServicer):
    """Stateless role x API decisions."""

    def AuthorizeApi(  # noqa: N802
        self, request: acs.AuthorizeApiRequest, context: grpc.ServicerContext
    ) -> acs.AuthorizeApiResponse:
        role = Role.parse(request.user_role)
        return acs.AuthorizeApiResponse(accept=authorize_api(role, request.api))
