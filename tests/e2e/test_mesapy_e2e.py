"""The MesaPy profile through the platform: Teaclave's logistic-regression example, train then
predict over its fixtures, with a payload of our own in MesaPy's style (``_numpypy``,
``marshal`` of dicts of arrays read back with ``frombuffer``, byte-string lines)."""

import re
import secrets

import pytest
from e2e_helpers import protected_fixture, run_task
from e2e_platform import Platform
from teaclave_fixtures import FIXTURES

from teaclave.client import (
    FrontendClient,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    InvalidArgument,
)

DATA = FIXTURES / "functions" / "py_logistic_reg"

# The file names and arguments of Teaclave's example; the code is ours.
LOGISTIC_REGRESSION = """
import _numpypy as np
import marshal


def options(argv):
    found = {}
    i = 0
    while i + 1 < len(argv):
        found[argv[i]] = argv[i + 1]
        i += 2
    return found


def read_rows(name):
    rows = []
    f = teaclave_open(name, "rb")
    line = f.readline()
    while line:
        rows.append(line.strip().split(','))
        line = f.readline()
    f.close()
    return rows


def load(name):
    f = teaclave_open(name, "rb")
    data = f.read()
    f.close()
    return marshal.loads(data)


def store(name, value):
    f = teaclave_open(name, "wb")
    f.write(marshal.dumps(value))
    f.close()


def scaled(x, low, high):
    return (x - low) / (high - low)


def activation(w, b, x):
    return 1.0 / (1.0 + np.umath.exp(-(w.T.dot(x) + b)))


def train(opts):
    rows = read_rows(opts["train_file"])
    x = np.multiarray.array([row[:-1] for row in rows], dtype='float64')
    y = np.multiarray.array([row[-1] for row in rows], dtype='float64').reshape(-1, 1).T
    low = x.min(0)
    high = x.max(0)
    x = scaled(x, low, high).T
    n = x.shape[1]
    w = np.multiarray.zeros((x.shape[0], 1))
    b = 0
    for step in range(2000):
        a = activation(w, b, x)
        w = w - 0.05 * x.dot((a - y).T) / n
        b = b - 0.05 * (a - y).sum() / n
    a = activation(w, b, x)
    loss = -(y * np.umath.log(a) + (1 - y) * np.umath.log(1 - a)).sum() / n
    print("loss %.2f" % loss)
    store(opts["params_saved"], {"w": w, "b": b})
    store(opts["scaler_saved"], {"max": high, "min": low})
    return "Training is finished!"


def predict(opts):
    params = load(opts["params_saved"])
    scaler = load(opts["scaler_saved"])
    w = np.multiarray.frombuffer(params["w"])
    b = np.multiarray.frombuffer(params["b"])
    low = np.multiarray.frombuffer(scaler["min"])
    high = np.multiarray.frombuffer(scaler["max"])
    rows = read_rows(opts["predict_file"])
    x = scaled(np.multiarray.array(rows, dtype='float64'), low, high).T
    a = activation(w, b, x)
    labels = np.multiarray.zeros((1, x.shape[1]))
    for i in range(x.shape[1]):
        if a[i] > 0.5:
            labels[0, i] = 1
    return str(labels)


def entrypoint(argv):
    opts = options(argv)
    if opts["operation"] == "train":
        return train(opts)
    if opts["operation"] == "predict":
        return predict(opts)
    return "unknown operation %s" % opts["operation"]
"""


def register(
    client: FrontendClient, arguments: tuple[str, ...], inputs: list[str], outputs: list[str]
) -> str:
    return client.register_function(
        "mesapy_logistic_reg",
        "logistic regression in MesaPy's style",
        "python",
        payload=LOGISTIC_REGRESSION.encode(),
        arguments=[FunctionArgument(key, "", True) for key in arguments],
        inputs=[FunctionInput(name) for name in inputs],
        outputs=[FunctionOutput(name) for name in outputs],
    )


def test_logistic_regression_trains_then_predicts(platform: Platform) -> None:
    user = platform.new_user("PlatformAdmin")  # as in Teaclave's examples
    trainer = register(
        user,
        ("operation", "params_saved", "save_log", "scaler_saved", "train_file"),
        ["input_train"],
        ["output_params", "output_scaler"],
    )
    predictor = register(
        user,
        ("operation", "params_saved", "predict_file", "scaler_saved"),
        ["input_predict", "output_params", "output_scaler"],
        [],
    )
    params, scaler = (
        user.register_output_file(
            (platform.files / f"{name}-{secrets.token_hex(4)}.out").as_uri(),
            "teaclave-file-128",
            bytes(16),
            b"",
        )
        for name in ("params", "scaler")
    )
    arguments = {"params_saved": "output_params", "scaler_saved": "output_scaler"}
    task_id = run_task(
        user,
        trainer,
        {**arguments, "operation": "train", "train_file": "input_train", "save_log": "true"},
        {"input_train": (user, protected_fixture(platform, user, DATA / "train.enc"))},
        {"output_params": (user, params), "output_scaler": (user, scaler)},
        "mesapy",
    )
    trained = user.get_task_outputs(task_id, timeout=120)
    assert trained.return_value == b"Training is finished!"
    (line,) = trained.log  # the payload's print, as it asked for its log
    assert line.startswith("loss ")
    assert 0 < float(line.removeprefix("loss ")) < 0.69  # below chance: ln 2

    task_id = run_task(
        user,
        predictor,
        {**arguments, "operation": "predict", "predict_file": "input_predict"},
        {
            "input_predict": (user, protected_fixture(platform, user, DATA / "predict.enc")),
            "output_params": (user, user.register_input_from_output(params)),
            "output_scaler": (user, user.register_input_from_output(scaler)),
        },
        {},
        "mesapy",
    )
    expected = (DATA / "py_result.txt").read_bytes().strip()  # "[1.0 1.0 0.0 0.0 0.0]"
    assert user.get_task_result(task_id, timeout=120) == expected


def test_python2_syntax_is_refused_by_name(platform: Platform) -> None:
    user = platform.new_user("PlatformAdmin")
    payload = b'def entrypoint(argv):\n    print "hello"\n'
    message = "invalid function payload: Python 2 syntax is not supported (the print statement)"
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        user.register_function("py2", "Python 2", "python", payload=payload)
