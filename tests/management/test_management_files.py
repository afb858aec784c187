"""Management over RA-TLS gRPC: caller identity and files (reference §2.6, §3.4, §4.3)."""

from dataclasses import replace

import pytest
from mgmt_helpers import CMAC, RAW, User, UserFactory, refused, register_input, register_output

from teaclave.core.codec import decode, encode
from teaclave.core.errors import Status
from teaclave.core.model import CryptoSchema, OutputFile
from teaclave.proto import teaclave_common_pb2 as common
from teaclave.proto import teaclave_frontend_service_pb2 as fe
from teaclave.storage import keys
from teaclave.storage.api import Store, Write


def _uuid(data_id: str) -> str:
    return data_id.split("-", 1)[1]


def test_missing_identity_is_unknown(user: UserFactory) -> None:
    request = fe.GetInputFileRequest(data_id="input-x")
    refused(
        Status.UNKNOWN, "missing user id", lambda: user(None, "DataOwner-x").GetInputFile(request)
    )
    refused(Status.UNKNOWN, "missing user role", lambda: user("alice", None).GetInputFile(request))


def test_register_and_get_input(alice: User, bob: User) -> None:
    data_id = register_input(alice)
    assert data_id.startswith("input-")
    response = alice.GetInputFile(fe.GetInputFileRequest(data_id=data_id))
    assert (list(response.owner), response.cmac) == (["alice"], CMAC)
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: not an owner of the file",
        lambda: bob.GetInputFile(fe.GetInputFileRequest(data_id=data_id)),
    )


def test_register_and_get_output(alice: User) -> None:
    data_id = register_output(alice)
    assert data_id.startswith("output-")
    response = alice.GetOutputFile(fe.GetOutputFileRequest(data_id=data_id))
    assert (list(response.owner), response.cmac) == (["alice"], b"")


@pytest.mark.parametrize(
    "data_id",
    [
        "",
        "input",
        "input-not-a-uuid",
        "output-00000000-0000-4000-8000-000000000000",
        "input-00000000-0000-4000-8000-000000000000",
    ],
)
def test_invalid_data_id(alice: User, data_id: str) -> None:
    refused(
        Status.INVALID_ARGUMENT,
        "invalid data id",
        lambda: alice.GetInputFile(fe.GetInputFileRequest(data_id=data_id)),
    )


@pytest.mark.parametrize(
    ("url", "cmac", "crypto", "message"),
    [
        (
            "ftp://host/x",
            CMAC,
            RAW,
            "invalid url: scheme must be one of data, file, http, https, s3",
        ),
        (
            "just text",
            CMAC,
            RAW,
            "invalid url: scheme must be one of data, file, http, https, s3",
        ),
        (
            "http://host:port/x",
            CMAC,
            RAW,
            "invalid url: Port could not be cast to integer value as 'port'",
        ),
        ("file:", CMAC, RAW, "invalid url: nothing after the scheme"),
        ("file:///x", CMAC[:15], RAW, "invalid cmac: must be 16 bytes, got 15"),
        ("file:///x", b"", RAW, "invalid cmac: must be 16 bytes, got 0"),
        ("file:///x", CMAC, common.FileCryptoInfo(schema="rot13"), "invalid crypto schema 'rot13'"),
        ("file:///x", CMAC, None, "invalid crypto schema ''"),
        (
            "file:///x",
            CMAC,
            common.FileCryptoInfo(schema="aes-gcm-256", key=bytes(16), iv=bytes(12)),
            "aes-gcm-256 key must be 32 bytes, got 16",
        ),
        (
            "file:///x",
            CMAC,
            common.FileCryptoInfo(schema="teaclave-file-128", key=bytes(16), iv=bytes(12)),
            "teaclave-file-128 takes no iv",
        ),
    ],
)
def test_malformed_registration_is_invalid_argument(
    alice: User, url: str, cmac: bytes, crypto: common.FileCryptoInfo | None, message: str
) -> None:
    request = fe.RegisterInputFileRequest(url=url, cmac=cmac, crypto_info=crypto)
    refused(Status.INVALID_ARGUMENT, message, lambda: alice.RegisterInputFile(request))


@pytest.mark.parametrize(
    "url",
    ["file:///data/x.enc", "data:text/plain;base64,SGVsbG8=", "s3://bucket/key", "HTTPS://h/x"],
)
def test_accepted_urls(alice: User, url: str) -> None:
    assert register_input(alice, url).startswith("input-")


FUSION_REFUSED = (
    "invalid url: fusion URLs belong to the platform; use RegisterFusionOutput "
    "and RegisterInputFromOutput"
)


@pytest.mark.parametrize(
    "url",
    [
        "fusion:///TEACLAVE_FUSION_BASE/victim.fusion",
        "FUSION:///TEACLAVE_FUSION_BASE/victim.fusion",
        "Fusion://host/x",
        " fusion:///TEACLAVE_FUSION_BASE/victim.fusion",
        "\x00fusion:///TEACLAVE_FUSION_BASE/victim.fusion",
        "fu\tsi\non:///TEACLAVE_FUSION_BASE/victim.fusion",
        "fusion:TEACLAVE_FUSION_BASE/victim.fusion",
    ],
)
def test_fusion_urls_belong_to_the_platform(alice: User, scheduler_store: Store, url: str) -> None:
    """Users name no fusion file: not to read one as a raw input, nor to squat one."""
    mine_in, mine_out = register_input(alice), register_output(alice)
    calls = {
        "RegisterInputFile": lambda: alice.RegisterInputFile(
            fe.RegisterInputFileRequest(url=url, cmac=CMAC, crypto_info=RAW)
        ),
        "RegisterOutputFile": lambda: alice.RegisterOutputFile(
            fe.RegisterOutputFileRequest(
                url=url, crypto_info=common.FileCryptoInfo(schema="teaclave-file-128", key=CMAC)
            )
        ),
        "UpdateInputFile": lambda: alice.UpdateInputFile(
            fe.UpdateInputFileRequest(data_id=mine_in, url=url)
        ),
        "UpdateOutputFile": lambda: alice.UpdateOutputFile(
            fe.UpdateOutputFileRequest(data_id=mine_out, url=url)
        ),
    }
    outputs = scheduler_store.scan(keys.OUTPUT)
    for call in calls.values():
        refused(Status.INVALID_ARGUMENT, FUSION_REFUSED, call)
    assert scheduler_store.scan(keys.OUTPUT) == outputs  # nothing registered, none retired


def test_update_input_creates_a_new_record(alice: User, bob: User) -> None:
    old = register_input(alice, "https://host/old")
    new = alice.UpdateInputFile(fe.UpdateInputFileRequest(data_id=old, url="https://host/new"))
    assert new.data_id.startswith("input-")
    assert new.data_id != old
    for data_id in (old, new.data_id):
        assert alice.GetInputFile(fe.GetInputFileRequest(data_id=data_id)).cmac == CMAC
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: only a file's sole owner can update it",
        lambda: bob.UpdateInputFile(fe.UpdateInputFileRequest(data_id=old, url="https://h/x")),
    )
    refused(
        Status.INVALID_ARGUMENT,
        "invalid url: scheme must be one of data, file, http, https, s3",
        lambda: alice.UpdateInputFile(fe.UpdateInputFileRequest(data_id=old, url="x")),
    )


def test_update_output(alice: User, scheduler_store: Store) -> None:
    old = register_output(alice)
    new = alice.UpdateOutputFile(fe.UpdateOutputFileRequest(data_id=old, url="s3://b/new"))
    [record] = scheduler_store.get([keys.OUTPUT + _uuid(new.data_id)])
    updated = decode(OutputFile, record.value)
    assert (updated.url, updated.owners, updated.crypto.schema) == (
        "s3://b/new",
        {"alice"},
        CryptoSchema.AES_GCM_128,
    )
    # The copy keeps key and iv: the old registration may never be written again.
    [record] = scheduler_store.get([keys.OUTPUT + _uuid(old)])
    assert decode(OutputFile, record.value).replaced
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: the output was replaced by an update; register a new output instead",
        lambda: alice.UpdateOutputFile(fe.UpdateOutputFileRequest(data_id=old, url="s3://b/x")),
    )


def test_a_written_output_cannot_be_updated(alice: User, scheduler_store: Store) -> None:
    written = register_output(alice)
    _write_cmac(scheduler_store, written)
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: the output was already written; register a new output instead",
        lambda: alice.UpdateOutputFile(fe.UpdateOutputFileRequest(data_id=written, url="s3://b/y")),
    )


def _write_cmac(store: Store, data_id: str) -> None:
    key = keys.OUTPUT + _uuid(data_id)
    [record] = store.get([key])
    written = replace(decode(OutputFile, record.value), cmac=CMAC)
    store.commit([(key, record.version)], [Write(key, encode(written))])


def test_fusion_output_and_input_from_output(
    alice: User, bob: User, user: UserFactory, scheduler_store: Store
) -> None:
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: a fusion output needs at least two owners",
        lambda: alice.RegisterFusionOutput(
            fe.RegisterFusionOutputRequest(owner_list=["alice", "alice"])
        ),
    )
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: caller must be an owner of the fusion output",
        lambda: alice.RegisterFusionOutput(fe.RegisterFusionOutputRequest(owner_list=["b", "c"])),
    )
    fusion = alice.RegisterFusionOutput(
        fe.RegisterFusionOutputRequest(owner_list=["alice", "bob"])
    ).data_id
    [record] = scheduler_store.get([keys.OUTPUT + _uuid(fusion)])
    output = decode(OutputFile, record.value)
    assert output.url == f"fusion:///TEACLAVE_FUSION_BASE/{_uuid(fusion)}.fusion"
    assert output.crypto.schema is CryptoSchema.TEACLAVE_FILE_128
    assert len(output.crypto.key) == 16
    assert output.crypto.key != bytes(16)
    assert (output.owners, output.cmac) == ({"alice", "bob"}, None)

    request = fe.RegisterInputFromOutputRequest(data_id=fusion)
    refused(
        Status.INVALID_ARGUMENT,
        "invalid output file: it has not been written yet",
        lambda: alice.RegisterInputFromOutput(request),
    )
    _write_cmac(scheduler_store, fusion)
    refused(
        Status.PERMISSION_DENIED,
        "permission denied: not an owner of the output",
        lambda: user("carol", "DataOwner-x").RegisterInputFromOutput(request),
    )
    input_id = bob.RegisterInputFromOutput(request).data_id
    assert input_id == "input-" + _uuid(fusion)
    response = alice.GetInputFile(fe.GetInputFileRequest(data_id=input_id))
    assert (sorted(response.owner), response.cmac) == (["alice", "bob"], CMAC)
