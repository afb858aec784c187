"""``builtin_principal_components_analysis`` (reference §7.11).

rusty-machine's PCA: the features (the last column, a label, is ignored) are
centred on their means if ``center``, the first ``n`` right singular vectors of
that matrix are the components, and each row is projected onto them. The SVD is
LAPACK's (numpy), not rulinalg's: values agree to rounding, and a component may
come out with the opposite sign on other data. Values are written as Rust's
``{:?}`` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from teaclave.core.errors import invalid_argument
from teaclave.functions.builtin import Builtin, Usize
from teaclave.functions.numeric_csv import read_rows, rust_debug
from teaclave.functions.runtime import Runtime

INPUT, OUTPUT = "input_data", "output_data"


@dataclass(frozen=True)
class PrincipalComponentsAnalysisArguments:
    """Number of components, whether to centre the data, number of features."""

    n: Usize
    center: bool
    feature_size: Usize


def principal_components(data: np.ndarray, n: int, center: bool) -> np.ndarray:
    """``data`` (rows by features) projected onto its first ``n`` principal components."""
    if center:
        data = data - data.mean(axis=0)
    _, _, right = np.linalg.svd(data, full_matrices=False)
    projected: np.ndarray = data @ right[:n].T
    return projected


def principal_components_analysis(
    arguments: PrincipalComponentsAnalysisArguments, runtime: Runtime
) -> str:
    """Write the projected rows to ``output_data``; returns "transform <r> rows * <c> cols
    lines of data."."""
    if arguments.feature_size < 1:
        raise invalid_argument("feature_size must be at least 1")
    if not 1 <= arguments.n <= arguments.feature_size:
        raise invalid_argument("n must be from 1 to feature_size")
    data = read_rows(runtime.open_input(INPUT), INPUT, arguments.feature_size + 1)[:, :-1]
    if arguments.n > len(data):
        raise invalid_argument(f"n must be at most the number of rows ({len(data)})")
    try:
        with np.errstate(all="ignore"):
            result = principal_components(data, arguments.n, arguments.center)
    except np.linalg.LinAlgError:
        result = np.array([np.nan])
    if not np.all(np.isfinite(result)):
        raise invalid_argument(f"{INPUT} is out of range: its values overflow")
    with runtime.create_output(OUTPUT) as output:
        for row in result.tolist():
            output.write((",".join(map(rust_debug, row)) + "\n").encode())
    rows, columns = result.shape
    return f"transform {rows} rows * {columns} cols lines of data."


BUILTIN = Builtin(
    "builtin_principal_components_analysis",
    PrincipalComponentsAnalysisArguments,
    principal_components_analysis,
    inputs=(INPUT,),
    outputs=(OUTPUT,),
)
