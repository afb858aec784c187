"""A Teaclave client built only from the reference's field tables.

Run as a separate process (its descriptors would clash with the platform's
own generated modules in one process):

    python client.py AUTH_ADDRESS FRONTEND_ADDRESS USER PASSWORD SIMULATION_KEY

It compiles ``reference_*.proto`` into a temporary directory, logs in,
registers ``builtin-echo``, creates and invokes a task, waits for the result
and prints a JSON summary. Only the attested channel comes from the platform.
"""

import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

from grpc_tools import protoc

from teaclave.attestation.evidence import AttestationPolicy
from teaclave.attestation.measure import local_measurements
from teaclave.rpc.channel import attested_channel

HERE = Path(__file__).resolve().parent
FINISHED = 10


def compile_protos(out: Path) -> None:
    for name in ("reference_api.proto", "reference_auth.proto"):
        if (
            protoc.main(
                ["protoc", f"-I{HERE}", f"--python_out={out}", f"--grpc_python_out={out}", name]
            )
            != 0
        ):
            raise SystemExit(f"protoc failed on {name}")
    sys.path.insert(0, str(out))


def main(
    auth_address: str, frontend_address: str, user: str, password: str, simulation_key: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        compile_protos(Path(tmp))
        api = importlib.import_module("reference_api_pb2")
        api_grpc = importlib.import_module("reference_api_pb2_grpc")
        auth = importlib.import_module("reference_auth_pb2")
        auth_grpc = importlib.import_module("reference_auth_pb2_grpc")
    policy = AttestationPolicy(
        measurements=local_measurements(("authentication", "frontend")),
        simulation_keys=frozenset({bytes.fromhex(simulation_key)}),
    )
    channel, _ = attested_channel(auth_address, "authentication", policy=policy)
    login = auth_grpc.TeaclaveAuthenticationApiStub(channel).UserLogin
    token = login(auth.UserLoginRequest(id=user, password=password), timeout=30).token
    channel, _ = attested_channel(frontend_address, "frontend", policy=policy)
    frontend = api_grpc.TeaclaveFrontendStub(channel)
    metadata = (("id", user), ("token", token))
    function_id = frontend.RegisterFunction(
        api.RegisterFunctionRequest(
            name="builtin-echo",
            executor_type="builtin",
            public=True,
            arguments=[api.FunctionArgument(key="message", allow_overwrite=True)],
            usage_quota=-1,
        ),
        metadata=metadata,
    ).function_id
    task_id = frontend.CreateTask(
        api.CreateTaskRequest(
            function_id=function_id,
            function_arguments=json.dumps({"message": "Hello From Teaclave!"}),
            executor="builtin",
        ),
        metadata=metadata,
    ).task_id
    frontend.InvokeTask(api.InvokeTaskRequest(task_id=task_id), metadata=metadata)
    deadline = time.monotonic() + 60
    while True:
        task = frontend.GetTask(api.GetTaskRequest(task_id=task_id), metadata=metadata)
        if task.status == FINISHED or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print(
        json.dumps(
            {
                "function_id": function_id,
                "task_id": task_id,
                "status": task.status,
                "creator": task.creator,
                "return_value": task.result.Ok.return_value.decode(),
                "platform_proto_loaded": any(m.startswith("teaclave.proto") for m in sys.modules),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:6])
