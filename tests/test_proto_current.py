"""The committed generated protobuf modules are exactly what proto/ produces."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "teaclave" / "proto").glob("*_pb2*")}
    committed = {
        p.name: p.read_bytes() for p in (ROOT / "src" / "teaclave" / "proto").glob("*_pb2*")
    }
    assert fresh, "protoc produced nothing"
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, f"run `make proto`: stale generated modules {stale}"


def test_public_api_names_match_the_reference() -> None:
    from teaclave.proto import teaclave_authentication_service_pb2 as auth
    from teaclave.proto import teaclave_frontend_service_pb2 as fe

    frontend = fe.DESCRIPTOR.services_by_name["TeaclaveFrontend"]
    assert frontend.full_name == "teaclave_frontend_service_proto.TeaclaveFrontend"
    ours = {"RevokeTaskApproval", "WaitTask"}
    assert len([m for m in frontend.methods if m.name not in ours]) == 22  # Teaclave's
    api = auth.DESCRIPTOR.services_by_name["TeaclaveAuthenticationApi"]
    assert api.full_name == "teaclave_authentication_service_proto.TeaclaveAuthenticationApi"
    assert [m.name for m in api.methods] == [
        "UserRegister",
        "UserUpdate",
        "UserLogin",
        "UserChangePassword",
        "ResetUserPassword",
        "DeleteUser",
        "ListUsers",
    ]
    fields = {f.name: (f.number, f.type) for f in fe.GetTaskResponse.DESCRIPTOR.fields}
    assert fields["status"][0] == 20
    assert fields["result"][0] == 21
    # Our additions take numbers Teaclave leaves free.
    assert fields["approval_digest"][0] == 100
    assert fields["approval_digest_contents"][0] == 101
    assert fe.ApproveTaskRequest.DESCRIPTOR.fields_by_name["digest"].number == 100
    assert fe.ApproveTaskResponse.DESCRIPTOR.fields_by_name["digest"].number == 100
    assert fe.RegisterFunctionRequest.DESCRIPTOR.fields_by_name["usage_quota"].number == 13
