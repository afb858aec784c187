"""``builtin-logistic-regression-train`` / ``-predict`` (reference §7.4, §7.5).

rusty-machine's logistic regression, step for step: a column of ones is put
before the features; training starts every parameter at 0.5 and takes ``alg_iters``
batch gradient-descent steps ``w -= alpha * X^T (sigmoid(X w) - y) / rows``,
stopping early once the cross-entropy cost changes by less than 1e-20. Products
are summed in rulinalg's order (eight interleaved partial sums) and e^x and ln x
come from the C library, as Rust's do, so the fixture's model is reproduced bit
for bit. The model is ``{"alpha": a, "iters": n, "parameters": [intercept, ...]}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from teaclave.core.errors import invalid_argument
from teaclave.functions.builtin import Builtin, NoArguments, Usize
from teaclave.functions.numeric_csv import read_rows
from teaclave.functions.runtime import Runtime

TRAINING_DATA, MODEL_FILE = "training_data", "model_file"
DATA_FILE, RESULT_FILE = "data_file", "result_file"

_LEARNING_EPS = 1e-20


def _rowwise_sum(terms: np.ndarray, *, dot: bool) -> np.ndarray:
    """The sum of each row of ``terms`` in rulinalg's order: ``utils::dot`` if ``dot``,
    else ``utils::unrolled_sum`` (they pair the eight partial sums differently)."""
    blocks = terms.shape[1] // 8 * 8
    partial = np.zeros((terms.shape[0], 8))
    for start in range(0, blocks, 8):
        partial = partial + terms[:, start : start + 8]
    total = np.zeros(terms.shape[0])
    for first, second in ((0, 4), (1, 5), (2, 6), (3, 7)):
        if dot:
            total = total + partial[:, first] + partial[:, second]
        else:
            total = total + (partial[:, first] + partial[:, second])
    for column in range(blocks, terms.shape[1]):
        total = total + terms[:, column]
    return total


def _libm(function: Callable[[float], float], values: np.ndarray) -> np.ndarray:
    """``function`` of every value (math.exp and math.log call the C library, as Rust does)."""
    return np.fromiter(map(function, values.tolist()), dtype=np.float64, count=len(values))


def _exp(value: float) -> float:
    """Rust's ``f64::exp``: infinity when too large."""
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def _ln(value: float) -> float:
    """Rust's ``f64::ln``: -inf at 0, NaN below."""
    if value > 0:
        return math.log(value)
    return -math.inf if value == 0 else math.nan


def _sigmoid(inputs: np.ndarray, parameters: np.ndarray) -> np.ndarray:
    """rusty-machine's ``(inputs * parameters).apply(Sigmoid::func)``."""
    return 1.0 / (1.0 + _libm(_exp, -_rowwise_sum(inputs * parameters, dot=True)))


def _with_intercept(features: np.ndarray) -> np.ndarray:
    """A column of ones, then ``features``."""
    return np.hstack([np.ones((len(features), 1)), features])


def _cost(outputs: np.ndarray, targets: np.ndarray) -> float:
    """rusty-machine's cross-entropy cost (NaN once an output reaches 0 or 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = _libm(_ln, outputs)
        inverse_logs = _libm(_ln, 1.0 - outputs)
        terms = targets * logs + (1.0 - targets) * inverse_logs
    return float(-_rowwise_sum(terms[np.newaxis, :], dot=False)[0] / len(outputs))


@dataclass(frozen=True)
class LogisticRegressionTrainArguments:
    """Gradient-descent step size and iterations, and the number of features."""

    alg_alpha: float
    alg_iters: Usize
    feature_size: Usize


def train(features: np.ndarray, targets: np.ndarray, alpha: float, iters: int) -> np.ndarray:
    """The parameters (intercept first) rusty-machine's gradient descent ends with."""
    inputs = _with_intercept(features)
    transposed = np.ascontiguousarray(inputs.T)
    parameters = np.full(inputs.shape[1], 0.5)
    previous_cost = 0.0
    for _ in range(iters):
        outputs = _sigmoid(inputs, parameters)
        cost = _cost(outputs, targets)
        if abs(previous_cost - cost) < _LEARNING_EPS:
            break
        gradient = _rowwise_sum(transposed * (outputs - targets), dot=True) / len(inputs)
        parameters = parameters - gradient * alpha
        previous_cost = cost
    return parameters


def logistic_regression_train(arguments: LogisticRegressionTrainArguments, runtime: Runtime) -> str:
    """Train on ``training_data`` (features, then a 0/1 label); write ``model_file``."""
    if arguments.alg_alpha <= 0:
        raise invalid_argument("alg_alpha must be positive")
    columns = arguments.feature_size + 1
    data = read_rows(runtime.open_input(TRAINING_DATA), TRAINING_DATA, columns)
    with np.errstate(over="ignore", invalid="ignore"):
        parameters = train(data[:, :-1], data[:, -1], arguments.alg_alpha, arguments.alg_iters)
    if not np.all(np.isfinite(parameters)):
        raise invalid_argument("training diverged: alg_alpha is too large for this data")
    model = {
        "alpha": arguments.alg_alpha,
        "iters": arguments.alg_iters,
        "parameters": parameters.tolist(),
    }
    with runtime.create_output(MODEL_FILE) as output:
        output.write(json.dumps(model, separators=(",", ":")).encode())
    return f"Trained {len(data)} lines of data."


def _parameters(text: bytes) -> np.ndarray:
    """The parameters of a model file (other keys are not needed to predict)."""
    try:
        model = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise invalid_argument(f"{MODEL_FILE} is not JSON") from None
    parameters = model.get("parameters") if isinstance(model, dict) else None
    if (
        not isinstance(parameters, list)
        or not parameters
        or not all(type(p) in (int, float) and math.isfinite(p) for p in parameters)
    ):
        raise invalid_argument(
            f"{MODEL_FILE} is not a logistic regression model: "
            "'parameters' must be a non-empty list of finite numbers"
        )
    return np.array(parameters, dtype=np.float64)


def logistic_regression_predict(arguments: NoArguments, runtime: Runtime) -> str:
    """Write the probability of label 1 for each line of ``data_file`` (4 decimals)."""
    with runtime.open_input(MODEL_FILE) as stream:
        parameters = _parameters(stream.read())
    features = read_rows(runtime.open_input(DATA_FILE), DATA_FILE, len(parameters) - 1)
    with np.errstate(over="ignore"):
        probabilities = _sigmoid(_with_intercept(features), parameters)
    with runtime.create_output(RESULT_FILE) as output:
        output.write("".join(f"{p:.4f}\n" for p in probabilities.tolist()).encode())
    return f"Predicted {len(probabilities)} lines of data."


TRAIN = Builtin(
    "builtin-logistic-regression-train",
    LogisticRegressionTrainArguments,
    logistic_regression_train,
    inputs=(TRAINING_DATA,),
    outputs=(MODEL_FILE,),
)
PREDICT = Builtin(
    "builtin-logistic-regression-predict",
    NoArguments,
    logistic_regression_predict,
    inputs=(MODEL_FILE, DATA_FILE),
    outputs=(RESULT_FILE,),
)
