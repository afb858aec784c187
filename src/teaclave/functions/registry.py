"""Every built-in function by name. Adding one: write its module, add it to the tuple."""

from __future__ import annotations

from typing import Any

from teaclave.core.errors import Status, TeaclaveError
from teaclave.functions import (
    echo,
    face_detection,
    gbdt,
    logistic_regression,
    online_decrypt,
    ordered_set_intersect,
    ordered_set_join,
    password_check,
    pca,
    private_aggregate,
    private_join_and_compute,
    rsa_sign,
)
from teaclave.functions.builtin import Builtin

BUILTINS: dict[str, Builtin[Any]] = {
    builtin.name: builtin
    for builtin in (
        echo.BUILTIN,
        ordered_set_intersect.BUILTIN,
        ordered_set_join.BUILTIN,
        face_detection.BUILTIN,
        gbdt.TRAIN,
        gbdt.PREDICT,
        logistic_regression.TRAIN,
        logistic_regression.PREDICT,
        pca.BUILTIN,
        online_decrypt.BUILTIN,
        rsa_sign.BUILTIN,
        password_check.BUILTIN,
        private_join_and_compute.BUILTIN,
        private_aggregate.BUILTIN,
    )
}


def lookup(name: str) -> Builtin[Any]:
    """The built-in function called ``name`` ("Function not found." otherwise)."""
    try:
        return BUILTINS[name]
    except KeyError:
        raise TeaclaveError(Status.NOT_FOUND, "Function not found.") from None
