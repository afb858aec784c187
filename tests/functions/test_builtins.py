"""Built-in functions over the in-memory runtime: echo, ordered-set-intersect, arguments."""

import json
from dataclasses import dataclass

import pytest
from teaclave_fixtures import PSI_DIR

from teaclave.core.errors import Status, TeaclaveError
from teaclave.functions import registry
from teaclave.functions.builtin import Builtin
from teaclave.functions.ordered_set_intersect import INPUT1, INPUT2, OUTPUT1, OUTPUT2
from teaclave.functions.runtime import MemoryRuntime

PSI = PSI_DIR
PSI_OUTPUTS = frozenset({OUTPUT1, OUTPUT2})


def run(name: str, arguments: dict[str, object], runtime: MemoryRuntime) -> str:
    return registry.lookup(name).invoke(json.dumps(arguments), runtime)


def psi(data1: bytes, data2: bytes, order: str = "ascending") -> tuple[str, bytes, bytes]:
    runtime = MemoryRuntime({INPUT1: data1, INPUT2: data2}, PSI_OUTPUTS)
    summary = run("builtin-ordered-set-intersect", {"order": order}, runtime)
    out1, out2 = runtime.output(OUTPUT1), runtime.output(OUTPUT2)
    assert out1 is not None
    assert out2 is not None
    return summary, out1, out2


def reverse_lines(data: bytes) -> bytes:
    return b"\n".join(reversed(data.splitlines()))


def test_echo_returns_its_message() -> None:
    runtime = MemoryRuntime({}, frozenset())
    assert run("builtin-echo", {"message": "Hello Teaclave!"}, runtime) == "Hello Teaclave!"


def test_psi_fixture() -> None:
    data1, data2 = (PSI / "psi0.txt").read_bytes(), (PSI / "psi1.txt").read_bytes()
    assert psi(data1, data2) == ("3 common items", b"0101010", b"01101")
    assert psi(data2, data1) == ("3 common items", b"01101", b"0101010")


def test_psi_fixture_in_desending_order() -> None:
    data1 = reverse_lines((PSI / "psi0.txt").read_bytes())
    data2 = reverse_lines((PSI / "psi1.txt").read_bytes())
    assert psi(data1, data2, "desending") == ("3 common items", b"0101010", b"10110")


def test_psi_duplicates_crlf_and_empty_inputs() -> None:
    assert psi(b"01\r\n01\r\n02\n", b"01\n02") == ("2 common items", b"101", b"11")
    assert psi(b"", b"aa\nbb\n") == ("0 common items", b"", b"00")


@pytest.mark.parametrize(
    ("data1", "data2", "order"),
    [
        (b"02\n01", b"01", "ascending"),
        (b"01", b"01\n02", "desending"),
        (b"01", b"01\n02\n03\n00", "ascending"),  # checked even after the other list ends
    ],
)
def test_psi_invalid_ordering(data1: bytes, data2: bytes, order: str) -> None:
    with pytest.raises(TeaclaveError, match=r"^Invalid ordering$"):
        psi(data1, data2, order)


def test_psi_invalid_order_and_hex() -> None:
    with pytest.raises(TeaclaveError, match=r"^Invalid order$"):
        psi(b"", b"", "descending")
    with pytest.raises(TeaclaveError, match="input_data2 line 2 is not a hex string"):
        psi(b"", b"00\n0g\n")


@pytest.mark.parametrize("name", sorted(registry.LOCATIONS))
def test_every_builtin_is_found_under_its_own_name(name: str) -> None:
    assert registry.lookup(name).name == name


def test_unknown_function() -> None:
    with pytest.raises(TeaclaveError, match=r"^Function not found\.$") as info:
        registry.lookup("builtin-nope")
    assert info.value.status is Status.NOT_FOUND


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ("{}", "missing key 'message'"),
        ('{"message": 3}', "'message' must be a string"),
        ('{"message": null}', "'message' must be a string"),
        ("[1]", "not a JSON object"),
        ("{", "not valid JSON"),
    ],
)
def test_argument_validation(arguments: str, reason: str) -> None:
    echo = registry.lookup("builtin-echo")
    with pytest.raises(TeaclaveError) as info:
        echo.parse_arguments(arguments)
    assert info.value.message == f"Cannot deserialize arguments: {reason}"
    assert info.value.status is Status.INVALID_ARGUMENT


def test_extra_arguments_are_ignored() -> None:
    echo = registry.lookup("builtin-echo")
    runtime = MemoryRuntime({}, frozenset())
    assert echo.invoke('{"message": "hi", "save_log": "true"}', runtime) == "hi"


def test_runtime_file_identifiers() -> None:
    runtime = MemoryRuntime({"in": b"data"}, frozenset({"out"}))
    assert runtime.open_input("in").read() == b"data"
    with pytest.raises(TeaclaveError, match=r"^Invalid input file identifier\.$"):
        runtime.open_input("other")
    with pytest.raises(TeaclaveError, match=r"^Invalid output file identifier$"):
        runtime.create_output("in")
    assert runtime.output("out") is None
    with runtime.create_output("out") as first:
        first.write(b"old")
    assert runtime.output("out") == b"old"
    runtime.create_output("out").write(b"new")  # creating again starts over
    assert runtime.output("out") == b"new"


@dataclass(frozen=True)
class Typed:
    count: int
    ratio: float
    flag: bool


TYPED = Builtin("typed", Typed, lambda arguments, runtime: repr(arguments))


def test_typed_arguments() -> None:
    parsed = TYPED.parse_arguments('{"count": 3, "ratio": 1, "flag": false}')
    assert parsed == Typed(3, 1.0, False)
    assert isinstance(parsed.ratio, float)


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ('{"count": true, "ratio": 1, "flag": false}', "'count' must be an integer"),
        ('{"count": 1.5, "ratio": 1, "flag": false}', "'count' must be an integer"),
        ('{"count": 1, "ratio": "1", "flag": false}', "'ratio' must be a number"),
        ('{"count": 1, "ratio": 1, "flag": "true"}', "'flag' must be a boolean"),
    ],
)
def test_typed_argument_errors(arguments: str, reason: str) -> None:
    with pytest.raises(TeaclaveError, match=f"^Cannot deserialize arguments: {reason}$"):
        TYPED.parse_arguments(arguments)
