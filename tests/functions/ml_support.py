"""Running the numerical built-ins over the in-memory runtime, for the test_ml_* modules."""

import json

import numpy as np
from teaclave_fixtures import FIXTURES

from teaclave.functions import registry
from teaclave.functions.runtime import MemoryRuntime

FUNCTIONS = FIXTURES / "functions"


def run(
    name: str, arguments: dict[str, object], inputs: dict[str, bytes]
) -> tuple[str, dict[str, bytes]]:
    """The summary of built-in ``name`` and every output it declares."""
    builtin = registry.lookup(name)
    runtime = MemoryRuntime(inputs, frozenset(builtin.outputs))
    summary = builtin.invoke(json.dumps(arguments), runtime)
    outputs = {output: runtime.output(output) for output in builtin.outputs}
    return summary, {name: data for name, data in outputs.items() if data is not None}


def table(data: bytes) -> np.ndarray:
    """A numeric CSV as a float64 array (one row per line)."""
    return np.array([[float(v) for v in line.split(b",")] for line in data.splitlines()])


def csv(rows: np.ndarray) -> bytes:
    """Rows as CSV with Python's shortest float text."""
    return "".join(",".join(map(repr, row)) + "\n" for row in rows.tolist()).encode()
