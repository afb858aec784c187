"""The frontend calls the other end-to-end tests do not reach, through the SDK."""

import pytest
from e2e_helpers import own_data, psi_task, register_echo, register_psi
from e2e_platform import Platform
from teaclave_fixtures import PSI_DIR

from teaclave.client import FunctionArgument, InvalidArgument, PermissionDenied, TeaclaveException


def test_file_updates_and_reuse_of_a_written_output(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob = platform.new_user(), platform.new_user()
    a = own_data(platform, alice, (PSI_DIR / "psi0.txt").read_bytes())
    b = own_data(platform, bob, (PSI_DIR / "psi1.txt").read_bytes())

    moved = alice.update_input_file(a.input_id, (platform.files / "moved.enc").as_uri())
    assert moved != a.input_id  # a new record; the old one stays
    assert alice.get_input_file(moved) == alice.get_input_file(a.input_id)
    replacement = alice.update_output_file(a.output_id, a.output_path.as_uri())
    assert replacement != a.output_id
    a.output_id = replacement  # the old registration may no longer be written
    with pytest.raises(PermissionDenied):
        bob.update_input_file(a.input_id, "file:///elsewhere")
    with pytest.raises(PermissionDenied):
        bob.get_input_file(a.input_id)

    task_id = psi_task(function_id, a, b)
    alice.approve_task(task_id)
    bob.approve_task(task_id)
    with pytest.raises(InvalidArgument, match="invalid output file"):
        alice.register_input_from_output(a.output_id)  # not written yet
    alice.invoke_task(task_id)
    alice.get_task_result(task_id, timeout=60)
    reused = alice.register_input_from_output(a.output_id)
    assert reused == "input-" + a.output_id.removeprefix("output-")
    assert alice.get_input_file(reused).cmac == alice.get_output_file(a.output_id).cmac


def test_fusion_output_needs_two_owners_including_the_caller(platform: Platform) -> None:
    alice, bob = platform.new_user(), platform.new_user()
    fusion = alice.register_fusion_output([alice.user_id, bob.user_id])
    assert fusion.startswith("output-")
    assert set(bob.get_output_file(fusion).owner) == {alice.user_id, bob.user_id}
    assert bob.get_output_file(fusion).cmac == b""
    with pytest.raises(PermissionDenied):
        alice.register_fusion_output([alice.user_id])
    with pytest.raises(PermissionDenied):
        alice.register_fusion_output([bob.user_id, "carol"])


def test_function_management(platform: Platform) -> None:
    owner = platform.new_user(role="FunctionOwner")
    user = platform.new_user()
    private = owner.register_function(
        "builtin-echo",
        "private echo",
        "builtin",
        public=False,
        arguments=[FunctionArgument("message", "", True)],
        user_allowlist=[user.user_id],
    )
    assert private in owner.list_functions(owner.user_id).registered_functions
    assert private in user.list_functions(user.user_id).allowed_functions
    seen = user.get_function(private)
    assert (seen.name, seen.payload, seen.user_allowlist) == ("builtin-echo", b"", ())

    assert (
        owner.update_function(
            private,
            "builtin-echo",
            "renamed",
            "builtin",
            public=False,
            arguments=[FunctionArgument("message", "", True)],
        )
        == private
    )
    assert owner.get_function(private).description == "renamed"
    with pytest.raises(PermissionDenied):  # dropped from the allow-list by the update
        user.get_function(private)

    with platform.admin() as admin:
        public = register_echo(admin)
    admin_client = platform.admin()
    with admin_client:
        admin_client.disable_function(public)
        with pytest.raises(TeaclaveException, match="disabled"):
            user.create_task(public, {"message": "x"}, "builtin")
        assert admin_client.get_function(public).name == "builtin-echo"

    owner.delete_function(private)
    with pytest.raises(InvalidArgument, match="invalid function id"):
        owner.get_function(private)
    assert private not in owner.list_functions(owner.user_id).registered_functions


def test_a_function_changed_after_approval_does_not_run(platform: Platform) -> None:
    owner = platform.new_user(role="FunctionOwner")
    function_id = owner.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message", "", True)]
    )
    user = platform.new_user()
    task_id = user.create_task(function_id, {"message": "approved code"}, "builtin")
    owner.update_function(
        function_id,
        "builtin-ordered-set-intersect",
        "swapped",
        "builtin",
        arguments=[FunctionArgument("message", "", True)],
    )
    with pytest.raises(TeaclaveException, match="function changed after the task was created"):
        user.invoke_task(task_id)
