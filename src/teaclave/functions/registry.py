"""Every built-in function by name. Adding one: write its module, add it to ``LOCATIONS``.

A built-in's module is imported when the function is first looked up (the
zygote looks up every one before it forks task processes; a process that runs
one built-in alone loads only its own: scikit-learn and OpenCV, imported inside
their functions, cost a task that does not use them a tenth of a second).
"""

from __future__ import annotations

import importlib
from typing import Any

from teaclave.core.errors import Status, TeaclaveError
from teaclave.functions.builtin import Builtin

LOCATIONS: dict[str, str] = {
    "builtin-echo": "echo.BUILTIN",
    "builtin-ordered-set-intersect": "ordered_set_intersect.BUILTIN",
    "builtin-ordered-set-join": "ordered_set_join.BUILTIN",
    "builtin-face-detection": "face_detection.BUILTIN",
    "builtin-gbdt-train": "gbdt.TRAIN",
    "builtin-gbdt-predict": "gbdt.PREDICT",
    "builtin-logistic-regression-train": "logistic_regression.TRAIN",
    "builtin-logistic-regression-predict": "logistic_regression.PREDICT",
    "builtin_principal_components_analysis": "pca.BUILTIN",
    "builtin_online_decrypt": "online_decrypt.BUILTIN",
    "builtin-rsa-sign": "rsa_sign.BUILTIN",
    "builtin-password-check": "password_check.BUILTIN",
    "builtin-private-join-and-compute": "private_join_and_compute.BUILTIN",
    "builtin-private-aggregate": "private_aggregate.BUILTIN",
}
"""Each built-in's name and where it is defined: ``MODULE.ATTRIBUTE`` in this package."""


def lookup(name: str) -> Builtin[Any]:
    """The built-in function called ``name`` ("Function not found." otherwise)."""
    try:
        module, attribute = LOCATIONS[name].split(".")
    except KeyError:
        raise TeaclaveError(Status.NOT_FOUND, "Function not found.") from None
    builtin: Builtin[Any] = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
    return builtin
