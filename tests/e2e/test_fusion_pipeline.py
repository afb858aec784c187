"""Chaining tasks through a fusion output (reference §3.4, §3.7).

Task 1 joins alice's and bob's tables into a fusion output that both own and
nobody outside the platform can read. Task 2 uses that file as an input, so it
runs only after both owners approve; its result goes to alice alone. Fusion
URLs belong to the platform: no user can name one, neither to squat a fusion
output before it is written nor to read one as a raw input.
"""

import pytest
from e2e_helpers import own_data
from e2e_platform import Platform, wait_for
from teaclave_fixtures import FIXTURES

from teaclave.client import (
    DataMap,
    FrontendClient,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    InvalidArgument,
    OwnerList,
    TeaclaveException,
)

JOIN_DIR = FIXTURES / "functions" / "ordered_set_join"


def register_join(client: FrontendClient) -> str:
    return client.register_function(
        "builtin-ordered-set-join",
        "join on a sorted key column",
        "builtin",
        arguments=[
            FunctionArgument(key, "", True)
            for key in ("left_column", "right_column", "ascending", "drop")
        ],
        inputs=[FunctionInput("input_data1"), FunctionInput("input_data2")],
        outputs=[FunctionOutput("output_result")],
    )


def join_task(
    creator: FrontendClient,
    function_id: str,
    owners1: list[str],
    owners2: list[str],
    output_owners: list[str],
    *,
    drop: bool,
) -> str:
    arguments = {"left_column": 0, "right_column": 0, "ascending": True, "drop": drop}
    return creator.create_task(
        function_id,
        arguments,
        "builtin",
        [OwnerList("input_data1", owners1), OwnerList("input_data2", owners2)],
        [OwnerList("output_result", output_owners)],
    )


def joined(left: list[list[str]], right: list[list[str]], *, drop: bool) -> list[str]:
    """The reference join of two tables sorted and unique on column 0."""
    by_id = {row[0]: row[1:] for row in right}
    return [",".join((row[1:] if drop else row) + by_id[row[0]]) for row in left if row[0] in by_id]


FUSION_REFUSED = (
    "invalid url: fusion URLs belong to the platform; use RegisterFusionOutput "
    "and RegisterInputFromOutput"
)


def fusion_urls_refused(platform: Platform, eve: FrontendClient, fusion_id: str) -> None:
    """Each call that takes a URL refuses the fusion file's URL, in any spelling, audited."""
    path = f"///TEACLAVE_FUSION_BASE/{fusion_id.removeprefix('output-')}.fusion"
    own = own_data(platform, eve, b"eve's")
    calls = {
        "register_input_file": lambda url: eve.register_input_file(url, "raw", b"", b"", bytes(16)),
        "register_output_file": lambda url: eve.register_output_file(
            url, "teaclave-file-128", bytes(16), b""
        ),
        "update_input_file": lambda url: eve.update_input_file(own.input_id, url),
        "update_output_file": lambda url: eve.update_output_file(own.output_id, url),
    }
    for url in (f"fusion:{path}", f"FUSION:{path}", f" Fusion:{path}"):
        for call in calls.values():
            with pytest.raises(InvalidArgument) as refused:
                call(url)
            assert refused.value.message == FUSION_REFUSED
    with platform.admin() as admin:

        def audited() -> bool:
            entries = admin.query_audit_logs(f"user:{eve.user_id} result:false", 100)
            return sorted(e.message for e in entries) == sorted(
                f"{api}:{FUSION_REFUSED}" for api in calls for _ in range(3)
            )

        wait_for(audited, timeout=10, what="audit entries of the refused calls")


def rows(text: str) -> list[list[str]]:
    return [line.split(",") for line in text.splitlines() if line.strip()]


def test_join_into_a_fusion_file_then_a_task_on_it(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_join(admin)
    alice, bob = platform.new_user(), platform.new_user()
    table0 = (JOIN_DIR / "join0.csv").read_text()
    table1 = (JOIN_DIR / "join1.csv").read_text()
    a = own_data(platform, alice, table0.encode())
    b = own_data(platform, bob, table1.encode())
    both = [alice.user_id, bob.user_id]

    # Task 1: alice's table joined with bob's, into a file only the platform can read.
    fusion = alice.register_fusion_output(both)
    fusion_urls_refused(platform, platform.new_user(), fusion)  # no squatting its name
    first = join_task(alice, function_id, [alice.user_id], [bob.user_id], both, drop=False)
    alice.assign_data_to_task(first, [DataMap("input_data1", a.input_id)], [])
    bob.assign_data_to_task(first, [DataMap("input_data2", b.input_id)], [])
    alice.assign_data_to_task(first, [], [DataMap("output_result", fusion)])
    alice.approve_task(first)
    bob.approve_task(first)
    alice.invoke_task(first)
    assert alice.get_task_result(first, timeout=60) == b"120 records"
    assert len(bob.get_output_file(fusion).cmac) == 16
    fusion_urls_refused(platform, platform.new_user(), fusion)  # no reading it as raw input

    # Task 2: the fusion file joined again with alice's table; the result is alice's.
    fused = alice.register_input_from_output(fusion)
    second = join_task(alice, function_id, both, [alice.user_id], [alice.user_id], drop=True)
    alice.assign_data_to_task(
        second, [DataMap("input_data1", fused)], [DataMap("output_result", a.output_id)]
    )
    alice.assign_data_to_task(second, [DataMap("input_data2", a.input_id)], [])
    alice.approve_task(second)
    with pytest.raises(TeaclaveException, match="not yet approved by"):
        alice.invoke_task(second)  # bob co-owns the fusion file: his approval is needed
    bob.approve_task(second)
    alice.invoke_task(second)
    outputs = alice.get_task_outputs(second, timeout=60)
    assert outputs.return_value == b"120 records"
    first_join = joined(rows(table0), rows(table1), drop=False)
    expected = joined([row.split(",") for row in first_join], rows(table0), drop=True)
    assert a.read_output(outputs.tags_map["output_result"]).decode().splitlines() == expected
