"""builtin-gbdt-train and builtin-gbdt-predict (reference §7.2, §7.3) on Teaclave's fixtures."""

import json
from typing import Any

import numpy as np
import pytest
from ml_support import FUNCTIONS, csv, run, table
from sklearn.ensemble import GradientBoostingRegressor

from teaclave.core.errors import Status, TeaclaveError
from teaclave.functions import gbdt

TRAINING = FUNCTIONS / "gbdt_training"
PREDICTION = FUNCTIONS / "gbdt_prediction"
FIXTURE_ARGUMENTS = {
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
_SKLEARN_LOSSES = {"LAD": "absolute_error", "SquaredError": "squared_error"}


def train(data: bytes, **changes: object) -> tuple[str, bytes]:
    summary, outputs = run(
        "builtin-gbdt-train", FIXTURE_ARGUMENTS | changes, {"training_data": data}
    )
    return summary, outputs["trained_model"]


def predict(model: bytes, data: bytes) -> tuple[str, bytes]:
    inputs = {"model_file": model, "data_file": data}
    summary, outputs = run("builtin-gbdt-predict", {}, inputs)
    return summary, outputs["result_file"]


def predictions(model: bytes, data: bytes) -> np.ndarray:
    return table(predict(model, data)[1]).ravel()


def sklearn_reference(features: np.ndarray, labels: np.ndarray, **changes: object) -> Any:
    """The regressor the documented mapping of gbdt-rs's configuration gives."""
    arguments = FIXTURE_ARGUMENTS | changes
    return GradientBoostingRegressor(
        loss=_SKLEARN_LOSSES[str(arguments["loss"])],
        n_estimators=arguments["iterations"],
        learning_rate=arguments["shrinkage"],
        max_depth=arguments["max_depth"],
        subsample=arguments["data_sample_ratio"],
        max_features=arguments["feature_sample_ratio"],
        min_samples_leaf=arguments["min_leaf_size"],
        random_state=0,
    ).fit(features, labels)


def test_predict_reproduces_teaclave_byte_for_byte() -> None:
    model, data = (
        (PREDICTION / "model.txt").read_bytes(),
        (PREDICTION / "test_data.txt").read_bytes(),
    )
    summary, result = predict(model, data)
    assert summary == "Predict result has 30 lines of data."
    assert result == (PREDICTION / "expected_result.txt").read_bytes()


def test_train_on_the_fixture_predicts_like_sklearn_and_teaclave() -> None:
    data = (TRAINING / "train.txt").read_bytes()
    summary, model = train(data)
    assert summary == "Trained 120 lines of data."
    assert (
        json.loads(model)["conf"]
        == json.loads((TRAINING / "expected_model.txt").read_bytes())["conf"]
    )
    rows = table(data)
    features, labels = rows[:, :4], rows[:, 4]
    ours = predictions(model, csv(features))
    reference = sklearn_reference(features, labels)
    np.testing.assert_allclose(ours, reference.predict(features), rtol=0, atol=1e-9)
    teaclaves = predictions((TRAINING / "expected_model.txt").read_bytes(), csv(features))
    assert np.mean(np.round(ours) == labels) == 1.0
    assert np.mean(np.round(teaclaves) == labels) == 1.0
    assert np.max(np.abs(ours - teaclaves)) < 1e-6
    # Held-out rows: Teaclave's model and ours round alike on 29 of 30.
    test = (PREDICTION / "test_data.txt").read_bytes()
    ours, teaclaves = (
        predictions(model, test),
        predictions((PREDICTION / "model.txt").read_bytes(), test),
    )
    assert np.sum(np.round(ours) == np.round(teaclaves)) == 29


@pytest.mark.parametrize(
    "changes",
    [
        {"loss": "SquaredError", "max_depth": 3, "iterations": 30},
        {
            "data_sample_ratio": 0.7,
            "feature_sample_ratio": 0.5,
            "min_leaf_size": 3,
            "iterations": 20,
        },
    ],
)
def test_exported_trees_split_exactly_like_sklearn(changes: dict[str, object]) -> None:
    # Integer features: predicting at the training values and half-way between them
    # lands on and around every threshold sklearn chose (its rule is x <= t).
    generator = np.random.default_rng(7)
    features = generator.integers(0, 6, size=(80, 3)).astype(float)
    # Labels in single precision, as training reads them.
    labels = (features @ [1.0, -2.0, 0.5] + generator.normal(size=80)).astype(np.float32)
    data = np.column_stack([features, labels.astype(float)])
    _, model = train(csv(data), feature_size=3, **changes)
    probes = np.vstack([features, features + 0.5, features - 1e-7, features + 1e-7])
    reference = sklearn_reference(features, labels, **changes)
    expected = reference.predict(probes.astype(np.float32))
    np.testing.assert_allclose(predictions(model, csv(probes)), expected, rtol=0, atol=1e-9)


def stump_model(loss: str, bias: float, shrinkage: float) -> bytes:
    """Two trees, each one split on feature 0 at 1.5 (leaves -1 and 1; missing values
    stop at the root, whose pred is 0.25), in gbdt-rs's single-precision format."""
    split = {"feature_index": 0, "feature_value": 1.5, "pred": 0.25, "missing": 0}
    leaf = {"feature_index": 0, "feature_value": 0.0, "missing": 0, "is_leaf": True}
    nodes = [
        {"value": split | {"is_leaf": False}, "index": 0, "left": 1, "right": 2},
        {"value": leaf | {"pred": -1.0}, "index": 1, "left": 0, "right": 0},
        {"value": leaf | {"pred": 1.0}, "index": 2, "left": 0, "right": 0},
    ]
    conf = {
        "feature_size": 2,
        "iterations": 2,
        "shrinkage": shrinkage,
        "loss": loss,
        "initial_guess_enabled": False,
    }
    tree = {"tree": {"tree": nodes}}
    return json.dumps({"conf": conf, "trees": [tree, tree], "bias": bias}).encode()


def test_single_precision_model_semantics() -> None:
    model = stump_model("LogLikelyhood", 0.3, 0.1)
    missing = float(np.finfo(np.float32).min)
    raw = predictions(model, f"1.0,0\n1.5,0\n{missing!r},0\n".encode())
    step = np.float32(0.1)
    for value, leaf in zip(raw, (-1.0, 1.0, 0.25), strict=True):
        total = np.float32(0.3) + step * np.float32(leaf) + step * np.float32(leaf)
        assert value == pytest.approx(1 / (1 + np.exp(-2 * float(total))), abs=1e-7)
    summary, result = predict(model, b"0,0\n")
    assert summary == "Predict result has 1 lines of data."
    assert result == b"0.5498340130\n"  # the single-precision value, to 10 decimals


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss": "LogLikelyhood"}, "loss must be LAD or SquaredError"),
        ({"iterations": 0}, "iterations must be at least 1"),
        ({"iterations": 100_001}, "iterations must be at most 100000"),
        ({"max_depth": 0}, "max_depth must be at least 1"),
        ({"shrinkage": 0}, "shrinkage must be positive"),
        ({"data_sample_ratio": 1.5}, r"data_sample_ratio must be in \(0, 1\]"),
        ({"feature_sample_ratio": 0.0}, r"feature_sample_ratio must be in \(0, 1\]"),
        ({"feature_size": 3}, "training_data line 1 has 5 columns, expected 4"),
        ({"training_optimization_level": 256}, "Cannot deserialize arguments: 'training_opt"),
        ({"max_depth": -1}, "Cannot deserialize arguments: 'max_depth'"),
    ],
)
def test_bad_training_arguments(changes: dict[str, object], message: str) -> None:
    with pytest.raises(TeaclaveError, match=f"^{message}") as info:
        train((TRAINING / "train.txt").read_bytes(), **changes)
    assert info.value.status is Status.INVALID_ARGUMENT


def test_bad_training_data() -> None:
    with pytest.raises(TeaclaveError, match=r"^training_data is empty$"):
        train(b"")
    with pytest.raises(
        TeaclaveError, match=r"^training_data line 2 column 3: 'a' is not a number$"
    ):
        train(b"1,2,3,4,5\n1,2,a,4,5\n")


def _model(**changes: object) -> bytes:
    model = json.loads((PREDICTION / "model.txt").read_bytes())
    for path, value in changes.items():
        *parents, key = path.split("__")
        target = model
        for parent in parents:
            target = target[int(parent)] if isinstance(target, list) else target[parent]
        target[key] = value
    return json.dumps(model).encode()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (b"", "model_file is not JSON"),
        (b"\xff", "model_file is not JSON"),
        (b"[" * 100_000, "model_file is not JSON"),
        (b'{"bias": NaN}', "model_file is not JSON"),
        (b"[]", "model_file is not a gbdt model: the model must be an object"),
        (_model(conf__loss="Hinge"), "model_file is not a gbdt model: conf.loss 'Hinge' is not"),
        (_model(conf__iterations=99), r"conf.iterations must equal the number of trees \(100\)"),
        (_model(bias="2"), "the model.bias must be a number"),
        (_model(conf__loss=["LAD"]), r"conf.loss \['LAD'\] is not a gbdt-rs loss"),
        (_model(conf__feature_size=0), "conf.feature_size must be at least 1"),
        (_model(value_type="f64", bias=10**400), "the model.bias is out of range"),
        (_model(bias=1e39), "the model.bias is out of range"),
        (_model(value_type="f16"), 'value_type must be "f32" or "f64"'),
        (_model(trees__0__tree__tree=[]), r"trees\[0\].tree.tree must be a non-empty list"),
        (
            _model(trees__3__tree__tree__0__left=0),
            r"trees\[3\].tree.tree\[0\].left must be a node after 0",
        ),
        (
            _model(trees__3__tree__tree__2__right=15),
            r"trees\[3\].tree.tree\[2\].right must be a node after 2",
        ),
        (_model(trees__1__tree__tree__0__value__feature_index=4), r"feature_index must be below 4"),
        (_model(trees__1__tree__tree__0__value__is_leaf=1), r"is_leaf must be true or false"),
        (_model(trees__1__tree__tree__1__value__pred=None), r"pred must be a number"),
    ],
)
def test_bad_models(model: bytes, message: str) -> None:
    with pytest.raises(TeaclaveError, match=message) as info:
        predict(model, b"1,2,3,4\n")
    assert info.value.status is Status.INVALID_ARGUMENT


def test_data_must_match_the_model() -> None:
    model = (PREDICTION / "model.txt").read_bytes()
    with pytest.raises(TeaclaveError, match=r"^data_file line 2 has 3 columns, expected 4$"):
        predict(model, b"1,2,3,4\n1,2,3\n")
    with pytest.raises(TeaclaveError, match=r"^data_file is empty$"):
        predict(model, b"")
    with pytest.raises(TeaclaveError, match=r"^data_file line 1 column 1: 'inf' is not a number$"):
        predict(model, b"inf,2,3,4\n")


def test_overflowing_prediction_is_an_error() -> None:
    model = stump_model("LAD", 3e38, 1e38)
    with pytest.raises(TeaclaveError, match=r"^the prediction for data_file line 2 is not finite$"):
        predict(model, b"1,0\n2,0\n")


def test_missing_value_is_gbdt_rs_sentinel() -> None:
    assert gbdt.MISSING == -3.4028234663852886e38
