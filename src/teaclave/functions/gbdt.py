"""``builtin-gbdt-train`` and ``builtin-gbdt-predict`` (reference §7.2, §7.3).

Both use gbdt-rs's JSON model: ``{"conf": {...}, "trees": [{"tree": {"tree": [node,
...]}, ...}], "bias": b}``, each node ``{"value": {"feature_index", "feature_value",
"pred", "missing", "is_leaf"}, "index", "left", "right"}``, the root first.

Prediction follows gbdt-rs: a sample goes left where ``feature < feature_value``
(a feature equal to ``f32::MIN`` is "missing": ``missing`` -1 goes left, 0 stops at
the node's ``pred``, anything else goes right); the result is ``bias`` (0 with
``conf.initial_guess_enabled``) plus ``shrinkage * pred`` of each tree in turn, then
the loss's link (LogLikelyhood: 1/(1+e^-2x); RegLogistic, BinaryLogistic: 1/(1+e^-x)).
All of it is single precision, as in gbdt-rs, unless the model says
``"value_type": "f64"`` (an extra key gbdt-rs ignores): then bias, shrinkage, preds and
sums are double precision. Features are single precision either way.

Training fits scikit-learn's GradientBoostingRegressor and exports it as an f64
model whose predictions are sklearn's own: sklearn sends ``x <= t`` left, for a
single-precision ``x``, which is ``x < v`` for ``v`` the single after the largest
single not above ``t``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from teaclave.core.errors import TeaclaveError, invalid_argument
from teaclave.functions.builtin import U8, U32, Builtin, NoArguments, Usize
from teaclave.functions.numeric_csv import parse_f32, parse_f64, read_rows
from teaclave.functions.runtime import Runtime

TRAINING_DATA, TRAINED_MODEL = "training_data", "trained_model"
MODEL_FILE, DATA_FILE, RESULT_FILE = "model_file", "data_file", "result_file"

MISSING = float(np.finfo(np.float32).min)
"""gbdt-rs's ``VALUE_TYPE_UNKNOWN``: a feature with this value is missing."""

MAX_ITERATIONS = 100_000
"""The most trees a model may have."""

_TRAINED_LOSSES = {"LAD": "absolute_error", "SquaredError": "squared_error"}
_LINKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "LogLikelyhood": lambda raw: 1 / (1 + _exp(-2 * raw)),
    "RegLogistic": lambda raw: 1 / (1 + _exp(-raw)),
    "BinaryLogistic": lambda raw: 1 / (1 + _exp(-raw)),
}
_LOSSES = {
    "SquaredError",
    "LAD",
    "RegLinear",
    "BinaryLogitraw",
    "MultiSoftprob",
    "MultiSoftmax",
    "RankPairwise",
    *_LINKS,
}


def _exp(values: np.ndarray) -> np.ndarray:
    """e^x of every value, rounded once to the values' precision."""
    with np.errstate(over="ignore"):
        return np.exp(values.astype(np.float64)).astype(values.dtype)


class _JsonFloat(str):
    """A JSON number with a fraction or exponent, kept as its text."""


@dataclass(frozen=True)
class _Tree:
    """One decision tree as arrays indexed by node."""

    feature: np.ndarray
    threshold: np.ndarray  # float32
    pred: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray
    missing: np.ndarray

    def evaluate(self, features: np.ndarray) -> np.ndarray:
        """The ``pred`` each row of ``features`` (float32) ends at."""
        node = np.zeros(len(features), dtype=np.intp)
        rows = np.flatnonzero(~self.leaf[node])
        while rows.size:
            at = node[rows]
            value = features[rows, self.feature[at]]
            step = np.where(value < self.threshold[at], self.left[at], self.right[at])
            missing = self.missing[at]
            unknown = np.where(missing == -1, self.left[at], np.where(missing == 0, at, step))
            step = np.where(value == MISSING, unknown, step)
            node[rows] = step
            rows = rows[(step != at) & ~self.leaf[step]]
        return self.pred[node]


@dataclass(frozen=True)
class Model:
    """A gbdt-rs model, ready to predict."""

    feature_size: int
    loss: str
    dtype: type[np.floating[Any]]
    start: np.floating[Any]  # bias, or 0 with initial guesses
    shrinkage: np.floating[Any]
    trees: tuple[_Tree, ...]

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictions (``self.dtype``) for the rows of ``features``."""
        features = features.astype(np.float32)
        total = np.full(len(features), self.start, dtype=self.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            for tree in self.trees:
                total = total + self.shrinkage * tree.evaluate(features)
            link = _LINKS.get(self.loss)
            return link(total) if link else total


class _Reader:
    """Typed access to the parsed model JSON, with errors that say where."""

    def __init__(self, dtype: type[np.floating[Any]]) -> None:
        self.dtype = dtype

    @staticmethod
    def fail(where: str, problem: str) -> TeaclaveError:
        return invalid_argument(f"{MODEL_FILE} is not a gbdt model: {where} {problem}")

    def get(self, obj: Any, key: str, where: str) -> Any:
        if not isinstance(obj, dict):
            raise self.fail(where, "must be an object")
        if key not in obj:
            raise self.fail(where, f"has no {key!r}")
        return obj[key]

    def integer(self, obj: Any, key: str, where: str) -> int:
        value = self.get(obj, key, where)
        if type(value) is not int:
            raise self.fail(f"{where}.{key}", "must be an integer")
        return value

    def number(self, obj: Any, key: str, where: str, *, single: bool = False) -> float:
        """A finite number, rounded to single precision if ``single`` or the model's."""
        value = self.get(obj, key, where)
        if type(value) not in (int, _JsonFloat):
            raise self.fail(f"{where}.{key}", "must be a number")
        parse = parse_f32 if single or self.dtype is np.float32 else parse_f64
        result = parse(str(value))
        if not math.isfinite(result):
            raise self.fail(f"{where}.{key}", "is out of range")
        return result

    def boolean(self, obj: Any, key: str, where: str) -> bool:
        value = self.get(obj, key, where)
        if type(value) is not bool:
            raise self.fail(f"{where}.{key}", "must be true or false")
        return value

    def tree(self, entry: Any, where: str, feature_size: int) -> _Tree:
        nodes = self.get(self.get(entry, "tree", where), "tree", f"{where}.tree")
        if not isinstance(nodes, list) or not nodes:
            raise self.fail(f"{where}.tree.tree", "must be a non-empty list of nodes")
        columns: dict[str, list[Any]] = {k: [] for k in _Tree.__dataclass_fields__}
        for position, node in enumerate(nodes):
            at = f"{where}.tree.tree[{position}]"
            value = self.get(node, "value", at)
            leaf = self.boolean(value, "is_leaf", f"{at}.value")
            columns["leaf"].append(leaf)
            columns["pred"].append(self.number(value, "pred", f"{at}.value"))
            if leaf:
                for key in ("feature", "threshold", "left", "right", "missing"):
                    columns[key].append(0)
                continue
            feature = self.integer(value, "feature_index", f"{at}.value")
            if not 0 <= feature < feature_size:
                raise self.fail(f"{at}.value.feature_index", f"must be below {feature_size}")
            columns["feature"].append(feature)
            columns["threshold"].append(
                self.number(value, "feature_value", f"{at}.value", single=True)
            )
            columns["missing"].append(self.integer(value, "missing", f"{at}.value"))
            for side in ("left", "right"):
                child = self.integer(node, side, at)
                # Children after their parent: every walk ends.
                if not position < child < len(nodes):
                    raise self.fail(f"{at}.{side}", f"must be a node after {position}")
                columns[side].append(child)
        return _Tree(
            feature=np.array(columns["feature"], dtype=np.intp),
            threshold=np.array(columns["threshold"], dtype=np.float32),
            pred=np.array(columns["pred"], dtype=self.dtype),
            left=np.array(columns["left"], dtype=np.intp),
            right=np.array(columns["right"], dtype=np.intp),
            leaf=np.array(columns["leaf"], dtype=bool),
            missing=np.array(columns["missing"], dtype=np.int64),
        )


def _reject_constant(name: str) -> None:
    raise ValueError(name)


def load_model(text: bytes) -> Model:
    """Parse and check a gbdt-rs model (or ours, with ``"value_type": "f64"``)."""
    try:
        raw = json.loads(text, parse_float=_JsonFloat, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise invalid_argument(f"{MODEL_FILE} is not JSON") from None
    value_type = raw.get("value_type", "f32") if isinstance(raw, dict) else "f32"
    if value_type not in ("f32", "f64"):
        raise _Reader.fail("value_type", 'must be "f32" or "f64"')
    reader = _Reader(np.float64 if value_type == "f64" else np.float32)
    conf = reader.get(raw, "conf", "the model")
    feature_size = reader.integer(conf, "feature_size", "conf")
    if feature_size < 1:
        raise reader.fail("conf.feature_size", "must be at least 1")
    loss = reader.get(conf, "loss", "conf")
    if not isinstance(loss, str) or loss not in _LOSSES:
        raise reader.fail("conf.loss", f"{loss!r} is not a gbdt-rs loss")
    trees = reader.get(raw, "trees", "the model")
    if not isinstance(trees, list):
        raise reader.fail("trees", "must be a list")
    if reader.integer(conf, "iterations", "conf") != len(trees):
        raise reader.fail("conf.iterations", f"must equal the number of trees ({len(trees)})")
    bias = reader.number(raw, "bias", "the model")
    guessed = reader.boolean(conf, "initial_guess_enabled", "conf")
    return Model(
        feature_size=feature_size,
        loss=loss,
        dtype=reader.dtype,
        start=reader.dtype(0.0 if guessed else bias),
        shrinkage=reader.dtype(reader.number(conf, "shrinkage", "conf")),
        trees=tuple(reader.tree(tree, f"trees[{i}]", feature_size) for i, tree in enumerate(trees)),
    )


@dataclass(frozen=True)
class GbdtTrainArguments:
    """gbdt-rs's configuration (reference §7.2)."""

    feature_size: Usize
    max_depth: U32
    iterations: Usize
    shrinkage: float
    feature_sample_ratio: float
    data_sample_ratio: float
    min_leaf_size: Usize
    loss: str
    training_optimization_level: U8


def _check(arguments: GbdtTrainArguments) -> None:
    if arguments.loss not in _TRAINED_LOSSES:
        raise invalid_argument("loss must be LAD or SquaredError")
    for name in ("feature_size", "max_depth", "iterations", "min_leaf_size"):
        if getattr(arguments, name) < 1:
            raise invalid_argument(f"{name} must be at least 1")
    if arguments.iterations > MAX_ITERATIONS:
        raise invalid_argument(f"iterations must be at most {MAX_ITERATIONS}")
    if arguments.shrinkage <= 0:
        raise invalid_argument("shrinkage must be positive")
    for name in ("feature_sample_ratio", "data_sample_ratio"):
        if not 0 < getattr(arguments, name) <= 1:
            raise invalid_argument(f"{name} must be in (0, 1]")


def _split_value(threshold: float) -> float:
    """The ``v`` with ``x < v`` exactly when ``x <= threshold``, for every single ``x``."""
    below = np.float32(threshold)
    if below > threshold:
        below = np.nextafter(below, np.float32(-np.inf))
    return float(str(np.nextafter(below, np.float32(np.inf))))  # shortest text, as Rust's


def _export_tree(estimator: Any, arguments: GbdtTrainArguments) -> dict[str, Any]:
    """One fitted sklearn regression tree as a gbdt-rs tree (node ids are preorder)."""
    tree = estimator.tree_
    nodes = []
    for index in range(tree.node_count):
        leaf = bool(tree.children_left[index] == -1)
        value = {
            "feature_index": 0 if leaf else int(tree.feature[index]),
            "feature_value": 0.0 if leaf else _split_value(tree.threshold[index]),
            "pred": float(tree.value[index, 0, 0]),
            "missing": 0 if leaf else -1,  # f32::MIN is below every split: left, as sklearn
            "is_leaf": leaf,
        }
        left, right = (0, 0) if leaf else (tree.children_left[index], tree.children_right[index])
        nodes.append({"value": value, "index": index, "left": int(left), "right": int(right)})
    return {
        "tree": {"tree": nodes},
        "feature_size": arguments.feature_size,
        "max_depth": arguments.max_depth,
        "min_leaf_size": arguments.min_leaf_size,
        "loss": arguments.loss,
        "feature_sample_ratio": arguments.feature_sample_ratio,
    }


def gbdt_train(arguments: GbdtTrainArguments, runtime: Runtime) -> str:
    """Fit gradient-boosted trees to ``training_data``; returns "Trained <n> lines of data."."""
    from sklearn.ensemble import GradientBoostingRegressor

    _check(arguments)
    data = read_rows(
        runtime.open_input(TRAINING_DATA), TRAINING_DATA, arguments.feature_size + 1, parse_f32
    )
    regressor = GradientBoostingRegressor(
        loss=_TRAINED_LOSSES[arguments.loss],
        n_estimators=arguments.iterations,
        learning_rate=arguments.shrinkage,
        max_depth=arguments.max_depth,
        subsample=arguments.data_sample_ratio,
        max_features=arguments.feature_sample_ratio,
        min_samples_leaf=min(arguments.min_leaf_size, len(data)),  # the same when larger
        random_state=0,
    ).fit(data[:, :-1], data[:, -1])
    conf = {
        "feature_size": arguments.feature_size,
        "max_depth": arguments.max_depth,
        "iterations": arguments.iterations,
        "shrinkage": arguments.shrinkage,
        "feature_sample_ratio": arguments.feature_sample_ratio,
        "data_sample_ratio": arguments.data_sample_ratio,
        "min_leaf_size": arguments.min_leaf_size,
        "loss": arguments.loss,
        "debug": False,
        "initial_guess_enabled": False,
        "training_optimization_level": arguments.training_optimization_level,
    }
    model = {
        "conf": conf,
        "trees": [_export_tree(stage[0], arguments) for stage in regressor.estimators_],
        "bias": float(regressor.init_.predict(data[:1, :-1])[0]),
        "value_type": "f64",
    }
    with runtime.create_output(TRAINED_MODEL) as output:
        output.write(json.dumps(model, separators=(",", ":"), allow_nan=False).encode())
    return f"Trained {len(data)} lines of data."


def gbdt_predict(arguments: NoArguments, runtime: Runtime) -> str:
    """Write one prediction per line of ``data_file`` (10 decimals) to ``result_file``."""
    with runtime.open_input(MODEL_FILE) as stream:
        model = load_model(stream.read())
    features = read_rows(runtime.open_input(DATA_FILE), DATA_FILE, model.feature_size, parse_f32)
    predictions = model.predict(features)
    for line, value in enumerate(predictions, start=1):
        if not np.isfinite(value):
            raise invalid_argument(f"the prediction for {DATA_FILE} line {line} is not finite")
    with runtime.create_output(RESULT_FILE) as output:
        output.write("".join(f"{value:.10f}\n" for value in predictions.tolist()).encode())
    return f"Predict result has {len(predictions)} lines of data."


TRAIN = Builtin(
    "builtin-gbdt-train",
    GbdtTrainArguments,
    gbdt_train,
    inputs=(TRAINING_DATA,),
    outputs=(TRAINED_MODEL,),
)
PREDICT = Builtin(
    "builtin-gbdt-predict",
    NoArguments,
    gbdt_predict,
    inputs=(MODEL_FILE, DATA_FILE),
    outputs=(RESULT_FILE,),
)
