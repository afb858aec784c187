"""The built-ins end to end: encrypted fixtures in, results decrypted by their owners."""

import csv
import io

import pytest
from e2e_helpers import (
    own_data,
    protected_fixture,
    psi_task,
    register_builtin,
    register_psi,
    run_task,
)
from e2e_platform import Platform
from teaclave_fixtures import FIXTURES, PSI_DIR

from teaclave.client import TaskFailed

FUNCTIONS = FIXTURES / "functions"
BANKS = FUNCTIONS / "private_join_and_compute" / "three_party_data"


def test_psi_over_protected_fixtures(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob = platform.new_user(), platform.new_user()
    a, b = own_data(platform, alice, b"unused"), own_data(platform, bob, b"unused")
    a.input_id = protected_fixture(
        platform, alice, FUNCTIONS / "ordered_set_intersect" / "psi0.txt.enc"
    )
    b.input_id = protected_fixture(
        platform, bob, FUNCTIONS / "ordered_set_intersect" / "psi1.txt.enc"
    )
    task_id = psi_task(function_id, a, b)
    alice.approve_task(task_id)
    bob.approve_task(task_id)
    alice.invoke_task(task_id)
    outputs = bob.get_task_outputs(task_id, timeout=60)
    assert outputs.return_value == b"3 common items"
    assert a.read_output(outputs.tags_map["output_result1"]) == b"0101010"
    assert b.read_output(outputs.tags_map["output_result2"]) == b"01101"


def test_join_of_protected_fixtures_is_the_training_set(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_builtin(
            admin,
            "builtin-ordered-set-join",
            ("left_column", "right_column", "ascending", "drop"),
            ("input_data1", "input_data2"),
            ("output_result",),
        )
    alice, bob = platform.new_user(), platform.new_user()
    result = own_data(platform, alice, b"unused")
    join = FUNCTIONS / "ordered_set_join"
    task_id = run_task(
        alice,
        function_id,
        {"left_column": 0, "right_column": 0, "ascending": True, "drop": True},
        {
            "input_data1": (alice, protected_fixture(platform, alice, join / "join0.csv.enc")),
            "input_data2": (bob, protected_fixture(platform, bob, join / "join1.csv.enc")),
        },
        {"output_result": (alice, result.output_id)},
    )
    outputs = alice.get_task_outputs(task_id, timeout=60)
    assert outputs.return_value == b"120 records"
    joined = result.read_output(outputs.tags_map["output_result"])
    assert joined.strip() == (FUNCTIONS / "gbdt_training" / "train.txt").read_bytes().strip()


def test_private_join_and_compute_three_banks(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_builtin(
            admin,
            "builtin-private-join-and-compute",
            ("num_user",),
            tuple(f"input_data{i}" for i in range(3)),
            tuple(f"output_data{i}" for i in range(3)),
        )
    creator = platform.new_user()
    banks = [platform.new_user() for _ in range(3)]
    owned = [own_data(platform, bank, b"unused") for bank in banks]
    inputs = {
        f"input_data{i}": (bank, protected_fixture(platform, bank, BANKS / f"bank_{name}.enc"))
        for i, (bank, name) in enumerate(zip(banks, "abc", strict=True))
    }
    outputs = {f"output_data{i}": (o.client, o.output_id) for i, o in enumerate(owned)}
    task_id = run_task(creator, function_id, {"num_user": 3}, inputs, outputs)
    result = creator.get_task_outputs(task_id, timeout=60)
    assert result.return_value == b"3 users join the task in total."
    for i, o in enumerate(owned):
        assert o.read_output(result.tags_map[f"output_data{i}"]) == b"c, 470000\ne, 5033000\n"


def test_rsa_sign_with_another_users_key(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_builtin(admin, "builtin-rsa-sign", ("data",), ("rsa_key",))
    key_owner, signer = platform.new_user(), platform.new_user()
    key_id = protected_fixture(platform, key_owner, FUNCTIONS / "rsa_sign" / "rsakey.enc")
    task_id = run_task(
        signer, function_id, {"data": "test data"}, {"rsa_key": (key_owner, key_id)}, {}
    )
    expected = (FUNCTIONS / "rsa_sign" / "expected_rsasign.txt").read_text().replace("\n", "")
    assert signer.get_task_result(task_id, timeout=60).decode() == expected


def test_password_check_from_a_data_url(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_builtin(
            admin, "builtin-password-check", (), ("password", "exposed_passwords")
        )
    user, list_owner = platform.new_user(), platform.new_user()
    # Reference §5.1: "password" under aes-gcm-128, key and iv all zero.
    password_id = user.register_input_file(
        "data:text/plain;base64,c+mpvRfZ0fboR0j3rTgOGDBiubSzlCt9",
        "aes-gcm-128",
        bytes(16),
        bytes(12),
        bytes.fromhex("e84748f7ad380e183062b9b4b3942b7d"),
    )
    exposed = FUNCTIONS / "password_check" / "exposed_passwords.txt.enc"
    task_id = run_task(
        user,
        function_id,
        {},
        {
            "password": (user, password_id),
            "exposed_passwords": (list_owner, protected_fixture(platform, list_owner, exposed)),
        },
        {},
    )
    assert user.get_task_result(task_id, timeout=60) == b"true"
    assert list_owner.get_task_result(task_id, timeout=60) == b"true"


AGGREGATE_ARGUMENTS = ("parties", "key", "group_by", "aggregates", "k")
BANK = "id,region,balance\n1,north,10\n2,north,20\n3,south,5\n4,north,30\n5,west,1\n"
SHOP = "id,spent\n1,4\n2,6\n3,1\n4,2\n5,9\n6,7\n"


def test_private_aggregate(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_builtin(
            admin,
            "builtin-private-aggregate",
            AGGREGATE_ARGUMENTS,
            ("input_data0", "input_data1"),
            ("output_result",),
        )
    bank, shop = platform.new_user(), platform.new_user()
    b, s = own_data(platform, bank, BANK.encode()), own_data(platform, shop, SHOP.encode())
    arguments = {
        "parties": 2,
        "key": "id",
        "group_by": "region",
        "aggregates": "count,sum:spent,mean:balance",
        "k": 2,
    }
    task_id = run_task(
        bank,
        function_id,
        arguments,
        {"input_data0": (bank, b.input_id), "input_data1": (shop, s.input_id)},
        {"output_result": (bank, b.output_id)},
    )
    outputs = bank.get_task_outputs(task_id, timeout=60)
    assert outputs.return_value == b"1 groups released"
    # North is ids 1, 2, 4: spent 4 + 6 + 2, balance (10 + 20 + 30) / 3; south and west are alone.
    rows = list(csv.reader(io.StringIO(b.read_output(outputs.tags_map["output_result"]).decode())))
    assert rows == [
        ["region", "count", "sum(spent)", "mean(balance)"],
        ["north", "3", "12", "20.000000"],
    ]


def test_unsorted_psi_input_fails_the_task_and_the_next_task_runs(platform: Platform) -> None:
    with platform.admin() as admin:
        function_id = register_psi(admin)
    alice, bob = platform.new_user(), platform.new_user()
    a, b = own_data(platform, alice, b"01\n00\n"), own_data(platform, bob, b"00\n")
    task_id = psi_task(function_id, a, b)
    alice.approve_task(task_id)
    bob.approve_task(task_id)
    alice.invoke_task(task_id)
    with pytest.raises(TaskFailed, match="Invalid ordering"):
        alice.get_task_result(task_id, timeout=60)
    assert not a.output_path.exists()
    assert not b.output_path.exists()

    a = own_data(platform, alice, (PSI_DIR / "psi0.txt").read_bytes())
    b = own_data(platform, bob, (PSI_DIR / "psi1.txt").read_bytes())
    task_id = psi_task(function_id, a, b)
    alice.approve_task(task_id)
    bob.approve_task(task_id)
    alice.invoke_task(task_id)
    assert alice.get_task_result(task_id, timeout=60) == b"3 common items"


@pytest.mark.parametrize(
    ("first", "arguments", "reason"),
    [
        (BANK.encode(), {"k": 1}, "k must be at least 2"),
        (BANK.encode(), {"aggregates": "sum:nope"}, "unknown column 'nope'"),
        (BANK.encode(), {"k": "2"}, "'k' must be a non-negative integer"),
        (b"id,region\n1,\xff\n", {}, "input_data0 is not UTF-8 text"),
        (b"", {}, "input_data0 is empty"),
        (b"id,region\n1,north,3\n", {}, "input_data0 line 2 has 3 fields"),
    ],
)
def test_bad_aggregate_inputs_fail_the_task(
    platform: Platform, first: bytes, arguments: dict[str, object], reason: str
) -> None:
    with platform.admin() as admin:
        function_id = register_builtin(
            admin,
            "builtin-private-aggregate",
            AGGREGATE_ARGUMENTS,
            ("input_data0", "input_data1"),
            ("output_result",),
        )
    alice, bob = platform.new_user(), platform.new_user()
    a, b = own_data(platform, alice, first), own_data(platform, bob, SHOP.encode())
    values = {"parties": 2, "key": "id", "group_by": "region", "aggregates": "count", "k": 2}
    task_id = run_task(
        alice,
        function_id,
        {**values, **arguments},
        {"input_data0": (alice, a.input_id), "input_data1": (bob, b.input_id)},
        {"output_result": (alice, a.output_id)},
    )
    with pytest.raises(TaskFailed, match=reason):
        alice.get_task_result(task_id, timeout=60)
    assert not a.output_path.exists()


GBDT_ARGUMENTS: dict[str, object] = {
    "feature_size": 4,
    "max_depth": 4,
    "iterations": 100,
    "shrinkage": 0.1,
    "feature_sample_ratio": 1.0,
    "data_sample_ratio": 1.0,
    "min_leaf_size": 1,
    "loss": "LAD",
    "training_optimization_level": 2,
}


def test_gbdt_train_then_predict_on_the_model(platform: Platform) -> None:
    with platform.admin() as admin:
        train_id = register_builtin(
            admin,
            "builtin-gbdt-train",
            tuple(GBDT_ARGUMENTS),
            ("training_data",),
            ("trained_model",),
        )
        predict_id = register_builtin(
            admin, "builtin-gbdt-predict", (), ("model_file", "data_file"), ("result_file",)
        )
    alice = platform.new_user()
    model = own_data(platform, alice, b"unused")
    training = protected_fixture(platform, alice, FUNCTIONS / "gbdt_training" / "train.enc")
    task_id = run_task(
        alice,
        train_id,
        GBDT_ARGUMENTS,
        {"training_data": (alice, training)},
        {"trained_model": (alice, model.output_id)},
    )
    assert alice.get_task_result(task_id, timeout=120) == b"Trained 120 lines of data."

    data = own_data(platform, alice, (FUNCTIONS / "gbdt_prediction" / "test_data.txt").read_bytes())
    task_id = run_task(
        alice,
        predict_id,
        {},
        {
            "model_file": (alice, alice.register_input_from_output(model.output_id)),
            "data_file": (alice, data.input_id),
        },
        {"result_file": (alice, data.output_id)},
    )
    outputs = alice.get_task_outputs(task_id, timeout=120)
    assert outputs.return_value == b"Predict result has 30 lines of data."
    predictions = data.read_output(outputs.tags_map["result_file"]).decode().splitlines()
    assert len(predictions) == 30
    assert all(line.count(".") == 1 and len(line.split(".")[1]) == 10 for line in predictions)
