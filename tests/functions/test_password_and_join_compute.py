"""builtin-password-check (reference §7.13) and builtin-private-join-and-compute (§7.12)."""

import pytest
from builtin_helpers import call
from teaclave_fixtures import FIXTURES

from teaclave.core.errors import TeaclaveError
from teaclave.functions import private_join_and_compute
from teaclave.functions.private_join_and_compute import PrivateJoinAndComputeArguments

PASSWORDS = FIXTURES / "functions" / "password_check"
BANKS = FIXTURES / "functions" / "private_join_and_compute" / "three_party_data"
PJC = "builtin-private-join-and-compute"


def check(password: bytes, exposed: bytes) -> str:
    inputs = {"password": password, "exposed_passwords": exposed}
    return call("builtin-password-check", {}, inputs)[0]


def test_password_check_fixture() -> None:
    exposed = (PASSWORDS / "exposed_passwords.txt").read_bytes()
    assert check((PASSWORDS / "password.txt").read_bytes(), exposed) == "true"
    assert check(b"correct horse battery staple\n", exposed) == "false"


def test_password_check_trims_lines() -> None:
    assert check(b"  secret \r\nsecond line", b"a\r\n secret\t\r\nb") == "true"
    assert check(b"secret", b"secrets\nsecre") == "false"


@pytest.mark.parametrize(
    ("password", "exposed", "message"),
    [
        (b"", b"a", r"^password is empty$"),
        (b"  \nx", b"a", r"^password is empty$"),
        (b"\xff", b"a", r"^password is not UTF-8 text$"),
        (b"a", b"b\n\xc3", r"^exposed_passwords is not UTF-8 text$"),
    ],
)
def test_password_check_errors(password: bytes, exposed: bytes, message: str) -> None:
    with pytest.raises(TeaclaveError, match=message):
        check(password, exposed)


def parse_bank(text: str) -> dict[str, int]:
    """A reading of the §7.12 rules written for this test."""
    amounts = {}
    for raw in text.split("\n"):
        parts = raw.strip().split(":")
        if len(raw.strip()) >= 3 and len(parts) == 2 and parts[1].strip().lstrip("+").isdigit():
            amounts[parts[0].strip()] = int(parts[1])
    return amounts


def join_and_compute(inputs: list[bytes]) -> tuple[str, dict[str, bytes]]:
    outputs = tuple(f"output_data{i}" for i in range(len(inputs)))
    named = {f"input_data{i}": data for i, data in enumerate(inputs)}
    return call(PJC, {"num_user": len(inputs)}, named, outputs)


def test_three_banks() -> None:
    texts = [(BANKS / f"bank_{bank}.txt").read_text() for bank in "abc"]
    summary, outputs = join_and_compute([text.encode() for text in texts])
    assert summary == "3 users join the task in total."
    banks = [parse_bank(text) for text in texts]
    common = sorted(set.intersection(*(set(bank) for bank in banks)))
    expected = "".join(f"{name}, {sum(bank[name] for bank in banks)}\n" for name in common)
    assert expected == "c, 470000\ne, 5033000\n"  # the reference's figures
    assert set(outputs.values()) == {expected.encode()}


def test_line_rules() -> None:
    first = b"a:1\nb : +2\n x:3 \nbad\nc:1:2\nd:-1\ne:4294967296\nf:\n:5\n: 5\nx:7\n"
    second = b"a:10\nb:20\nx:30\nc:1\nd:1\ne:1\n: 6\r\n"
    _, outputs = join_and_compute([first, second])
    # ":5" is too short; the empty identity counts; a later x:7 replaces x:3.
    assert outputs["output_data0"] == b", 11\na, 11\nb, 22\nx, 37\n"
    assert outputs["output_data1"] == outputs["output_data0"]


def test_needs_two_parties() -> None:
    with pytest.raises(TeaclaveError, match=r"^The demo requires at least two parties!$"):
        join_and_compute([b"a:1"])


def test_errors_name_the_input() -> None:
    with pytest.raises(TeaclaveError, match=r"^input_data1 is not UTF-8 text$"):
        join_and_compute([b"a:1", b"\xff:1"])
    with pytest.raises(TeaclaveError, match=r"^Invalid input file identifier\.$"):
        call(PJC, {"num_user": 3}, {"input_data0": b"", "input_data1": b""}, ())


def test_file_names_follow_num_user() -> None:
    inputs, outputs = private_join_and_compute.BUILTIN.file_names(
        PrivateJoinAndComputeArguments(private_join_and_compute.Usize(3))
    )
    assert inputs == ("input_data0", "input_data1", "input_data2")
    assert outputs == ("output_data0", "output_data1", "output_data2")
