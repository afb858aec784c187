"""builtin_principal_components_analysis (reference §7.11) on Teaclave's fixture."""

import numpy as np
import pytest
from ml_support import FUNCTIONS, csv, run, table

from teaclave.core.errors import Status, TeaclaveError
from teaclave.functions.numeric_csv import rust_debug

PCA = FUNCTIONS / "princopal_components_analysis"


def pca(data: bytes, n: int = 2, center: bool = True, features: int = 4) -> tuple[str, bytes]:
    arguments = {"n": n, "center": center, "feature_size": features}
    summary, outputs = run("builtin_principal_components_analysis", arguments, {"input_data": data})
    return summary, outputs["output_data"]


def test_fixture_matches_teaclave_up_to_rounding_and_sign() -> None:
    summary, output = pca((PCA / "input.txt").read_bytes())
    assert summary == "transform 90 rows * 2 cols lines of data."
    ours, expected = table(output), table((PCA / "expected_result.txt").read_bytes())
    assert ours.shape == expected.shape == (90, 2)
    for column in range(2):
        sign = np.sign(ours[:, column] @ expected[:, column])
        np.testing.assert_allclose(sign * ours[:, column], expected[:, column], rtol=0, atol=1e-12)
    # Every value is written as Rust's {:?} writes it.
    for line in output.decode().splitlines():
        assert line == ",".join(rust_debug(float(value)) for value in line.split(","))


def test_components_without_centering() -> None:
    # Rows on the line y = 2x: one component carries everything, the second nothing.
    data = np.array([[x, 2 * x, 0.0] for x in (1.0, 2.0, 3.0)])
    _, output = pca(csv(data), n=2, center=False, features=2)
    projected = table(output)
    np.testing.assert_allclose(np.abs(projected[:, 0]), np.sqrt(5) * data[:, 0], rtol=1e-12)
    np.testing.assert_allclose(projected[:, 1], 0.0, atol=1e-12)


@pytest.mark.parametrize(
    ("arguments", "data", "message"),
    [
        ({"n": 0}, b"1,2,3,4,0\n", "n must be from 1 to feature_size"),
        ({"n": 5}, b"1,2,3,4,0\n", "n must be from 1 to feature_size"),
        ({"features": 0, "n": 1}, b"1\n", "feature_size must be at least 1"),
        ({"n": 2}, b"1,2,3,4,0\n", r"n must be at most the number of rows \(1\)"),
        ({}, b"", "input_data is empty"),
        ({}, b"1,2,3,4\n", "input_data line 1 has 4 columns, expected 5"),
        ({}, b"1,2,3,4,0\n1,2,3,x,0\n", "input_data line 2 column 4: 'x' is not a number"),
        (
            {"n": 1, "center": False, "features": 2},
            b"1.5e308,1.5e308,0\n1.5e308,1.5e308,0\n",
            "input_data is out of range",
        ),
    ],
)
def test_bad_input(arguments: dict[str, object], data: bytes, message: str) -> None:
    with pytest.raises(TeaclaveError, match=f"^{message}") as info:
        pca(data, **arguments)  # type: ignore[arg-type]
    assert info.value.status is Status.INVALID_ARGUMENT
