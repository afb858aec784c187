"""Building blocks of the end-to-end tests: functions, encrypted files, tasks."""

import io
import json
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_platform import Platform, wait_for
from teaclave_file_fixtures import PROTECTED_FILES

from teaclave.cli.main import main
from teaclave.client import (
    DataMap,
    FrontendClient,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    OwnerList,
    TaskCanceled,
    TaskStatus,
)
from teaclave.crypto import aesgcm

PSI = "builtin-ordered-set-intersect"


def register_psi(client: FrontendClient) -> str:
    return client.register_function(
        PSI,
        "ordered set intersection",
        "builtin",
        public=True,
        arguments=[FunctionArgument("order")],
        inputs=[FunctionInput("input_data1"), FunctionInput("input_data2")],
        outputs=[FunctionOutput("output_result1"), FunctionOutput("output_result2")],
    )


def register_echo(client: FrontendClient, quota: int = -1) -> str:
    return client.register_function(
        "builtin-echo",
        "echo",
        "builtin",
        public=True,
        arguments=[FunctionArgument("message", "", True)],
        usage_quota=quota,
    )


def echo_task(platform: Platform, message: str = "hi") -> tuple[FrontendClient, str]:
    """A new user and their echo task (created, not invoked)."""
    with platform.admin() as admin:
        function_id = register_echo(admin)
    user = platform.new_user()
    return user, user.create_task(function_id, {"message": message}, "builtin")


@contextmanager
def slot_held(platform: Platform) -> Iterator[None]:
    """The executor's one task slot taken by a task held Running (its process stopped):
    no executor waits for a task, so a task invoked meanwhile stays Staged. At the end
    the held task is canceled, freeing the slot."""
    user, task_id = echo_task(platform, "holding the slot")
    held = platform.hold_next_task()
    user.invoke_task(task_id)
    held()
    wait_for(lambda: user.get_task(task_id).status is TaskStatus.RUNNING, what="held Running")
    try:
        yield
    finally:
        user.cancel_task(task_id)
        with pytest.raises(TaskCanceled):
            user.get_task_result(task_id, timeout=30)


@dataclass
class Owned:
    """A data owner's registered input and output, with the keys to read them."""

    client: FrontendClient
    input_id: str
    output_id: str
    output_path: Path
    output_key: bytes
    output_iv: bytes
    schema: str

    @property
    def user_id(self) -> str:
        return self.client.user_id

    def read_output(self, cmac: bytes) -> bytes:
        sink = io.BytesIO()
        with self.output_path.open("rb") as reader:
            aesgcm.decrypt_to(
                self.output_key, self.output_iv, reader, sink, role="output", cmac=cmac
            )
        return sink.getvalue()


def encrypt(key: bytes, iv: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """(file bytes, cmac) of ``plaintext`` in the aes-gcm file format."""
    sink = io.BytesIO()
    cmac = aesgcm.encrypt(key, iv, io.BytesIO(plaintext), sink)
    return sink.getvalue(), cmac


def own_data(
    platform: Platform,
    client: FrontendClient,
    plaintext: bytes,
    schema: str = "aes-gcm-128",
    *,
    mangle: bytes | None = None,
) -> Owned:
    """Encrypt ``plaintext`` under a fresh key, register it as input plus an output.

    ``mangle``: write these bytes as the input file instead (the registered cmac
    stays that of the genuine ciphertext).
    """
    size = 16 if schema == "aes-gcm-128" else 32
    key, iv = secrets.token_bytes(size), secrets.token_bytes(12)
    data, cmac = encrypt(key, iv, plaintext)
    path = platform.files / f"in-{secrets.token_hex(6)}.enc"
    path.write_bytes(data if mangle is None else mangle)
    input_id = client.register_input_file(path.as_uri(), schema, key, iv, cmac)
    out_key, out_iv = secrets.token_bytes(size), secrets.token_bytes(12)
    out_path = platform.files / f"out-{secrets.token_hex(6)}.enc"
    output_id = client.register_output_file(out_path.as_uri(), schema, out_key, out_iv)
    return Owned(client, input_id, output_id, out_path, out_key, out_iv, schema)


def psi_task(
    function_id: str, a: Owned, b: Owned, order: str = "ascending", executor: str = "builtin"
) -> str:
    """Create the two-party PSI task (as ``a``) and assign both parties' data."""
    task_id = a.client.create_task(
        function_id,
        {"order": order},
        executor,
        [OwnerList("input_data1", [a.user_id]), OwnerList("input_data2", [b.user_id])],
        [OwnerList("output_result1", [a.user_id]), OwnerList("output_result2", [b.user_id])],
    )
    a.client.assign_data_to_task(
        task_id, [DataMap("input_data1", a.input_id)], [DataMap("output_result1", a.output_id)]
    )
    b.client.assign_data_to_task(
        task_id, [DataMap("input_data2", b.input_id)], [DataMap("output_result2", b.output_id)]
    )
    return task_id


def register_builtin(
    client: FrontendClient,
    name: str,
    arguments: tuple[str, ...] = (),
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
) -> str:
    """Register built-in ``name``: task creators supply every argument."""
    return client.register_function(
        name,
        name,
        "builtin",
        public=True,
        arguments=[FunctionArgument(key, "", True) for key in arguments],
        inputs=[FunctionInput(input_name) for input_name in inputs],
        outputs=[FunctionOutput(output_name) for output_name in outputs],
    )


def protected_fixture(platform: Platform, client: FrontendClient, encrypted: Path) -> str:
    """Register a teaclave-file-128 fixture (all-zero key), served under the name bound into it."""
    (cmac,) = (cmac for path, _, cmac in PROTECTED_FILES if path == encrypted)
    directory = platform.files / secrets.token_hex(6)
    directory.mkdir()
    served = directory / encrypted.name
    shutil.copyfile(encrypted, served)
    return client.register_input_file(served.as_uri(), "teaclave-file-128", bytes(16), b"", cmac)


Slot = tuple[FrontendClient, str]
"""A task file slot's owner and the data id they assign to it."""


def run_task(
    creator: FrontendClient,
    function_id: str,
    arguments: dict[str, object],
    inputs: dict[str, Slot],
    outputs: dict[str, Slot],
    executor: str = "builtin",
) -> str:
    """Create a task, let each owner assign their file, every participant approve; invoke it."""
    task_id = creator.create_task(
        function_id,
        arguments,
        executor,
        [OwnerList(name, [client.user_id]) for name, (client, _) in inputs.items()],
        [OwnerList(name, [client.user_id]) for name, (client, _) in outputs.items()],
    )
    for name, (client, data_id) in inputs.items():
        client.assign_data_to_task(task_id, [DataMap(name, data_id)], [])
    for name, (client, data_id) in outputs.items():
        client.assign_data_to_task(task_id, [], [DataMap(name, data_id)])
    participants = {c.user_id: c for c, _ in [(creator, ""), *inputs.values(), *outputs.values()]}
    for client in participants.values():
        client.approve_task(task_id)
    creator.invoke_task(task_id)
    return task_id


def cli(
    platform: Platform,
    client: FrontendClient,
    session: Path,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
) -> tuple[int, str, str]:
    """Run ``teaclave`` as ``client``'s user against the platform."""
    session.write_text(json.dumps({"id": client.user_id, "token": client.token}))
    address = platform.config.endpoints.frontend_api
    options = ["--session", str(session), "--frontend-address", address]
    code = main([*argv, *options, "--simulation-key", platform.simulation_key])
    out, err = capsys.readouterr()
    return code, out, err
