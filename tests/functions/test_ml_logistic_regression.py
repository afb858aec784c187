"""builtin-logistic-regression-train / -predict (reference §7.4, §7.5) on Teaclave's fixtures."""

import json

import numpy as np
import pytest
from ml_support import FUNCTIONS, csv, run

from teaclave.core.errors import Status, TeaclaveError

TRAINING = FUNCTIONS / "logistic_regression_training"
PREDICTION = FUNCTIONS / "logistic_regression_prediction"


def train(
    data: bytes, alpha: float = 0.3, iters: int = 100, features: int = 30
) -> tuple[str, bytes]:
    arguments = {"alg_alpha": alpha, "alg_iters": iters, "feature_size": features}
    summary, outputs = run("builtin-logistic-regression-train", arguments, {"training_data": data})
    return summary, outputs["model_file"]


def predict(model: bytes, data: bytes) -> tuple[str, bytes]:
    inputs = {"model_file": model, "data_file": data}
    summary, outputs = run("builtin-logistic-regression-predict", {}, inputs)
    return summary, outputs["result_file"]


def test_train_reproduces_teaclave_model_byte_for_byte() -> None:
    summary, model = train((TRAINING / "train.txt").read_bytes())
    assert summary == "Trained 100 lines of data."
    assert model == (TRAINING / "expected_model.txt").read_bytes()


def test_predict_reproduces_teaclave() -> None:
    model = (PREDICTION / "model.txt").read_bytes()
    summary, result = predict(model, (PREDICTION / "predict_input.txt").read_bytes())
    assert summary == "Predicted 5 lines of data."
    assert result == b"0.7530\n0.9163\n0.2041\n0.0094\n0.0426\n"
    assert result == (PREDICTION / "expected_result.txt").read_bytes()


def test_trained_model_separates_its_training_data() -> None:
    generator = np.random.default_rng(3)
    features = generator.normal(size=(200, 2))
    labels = (features[:, 0] - features[:, 1] > 0).astype(float)
    _, model = train(csv(np.column_stack([features, labels])), alpha=1.0, iters=300, features=2)
    _, result = predict(model, csv(features))
    probabilities = np.array([float(line) for line in result.split()])
    assert np.mean((probabilities > 0.5) == labels) > 0.95
    assert json.loads(model)["iters"] == 300


def test_saturated_training_does_not_crash() -> None:
    # exp overflows and ln(0) appears; the cost becomes NaN, as in rusty-machine.
    _, model = train(b"1000,1\n-1000,0\n", alpha=0.1, iters=5, features=1)
    _, result = predict(model, b"800\n-800\n")
    assert result == b"1.0000\n0.0000\n"


@pytest.mark.parametrize(
    ("arguments", "data", "message"),
    [
        ({"alpha": 0.0}, b"1,0\n", "alg_alpha must be positive"),
        ({"alpha": 1e300, "features": 1}, b"1e300,0\n-1e300,1\n", "training diverged"),
        ({}, b"", "training_data is empty"),
        ({}, b"1,2\n", "training_data line 1 has 2 columns, expected 31"),
    ],
)
def test_bad_training_input(arguments: dict[str, float], data: bytes, message: str) -> None:
    with pytest.raises(TeaclaveError, match=f"^{message}") as info:
        train(data, **arguments)  # type: ignore[arg-type]
    assert info.value.status is Status.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (b"{", "model_file is not JSON"),
        (b"[1]", "'parameters' must be a non-empty list of finite numbers"),
        (b'{"parameters": []}', "'parameters' must be a non-empty list of finite numbers"),
        (b'{"parameters": [1, "2"]}', "'parameters' must be a non-empty list of finite numbers"),
        (b'{"parameters": [1, NaN]}', "'parameters' must be a non-empty list of finite numbers"),
        (b'{"parameters": [1, true]}', "'parameters' must be a non-empty list of finite numbers"),
        (b'{"parameters": [0.5, 1, 2]}', "data_file line 1 has 1 columns, expected 2"),
    ],
)
def test_bad_models(model: bytes, message: str) -> None:
    with pytest.raises(TeaclaveError, match=message) as info:
        predict(model, b"1\n")
    assert info.value.status is Status.INVALID_ARGUMENT
