"""``builtin-private-join-and-compute`` (reference §7.12): sums over identities all parties hold.

Inputs ``input_data0`` … ``input_data<num_user-1>`` hold lines ``identity :
amount``; a line is skipped if, trimmed, it is shorter than 3 bytes, does not
have exactly one ``:``, or its trimmed amount is not a ``u32`` (Rust's parse:
an optional ``+`` and decimal digits). Within one input a later line for an
identity replaces an earlier one. For every identity in all inputs, the sum of
its amounts (exact, unlike upstream's ``u32`` addition) is written as
``<identity>, <sum>`` lines, sorted by identity (upstream: hash-map order), to
every output ``output_data0`` … ``output_data<num_user-1>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from teaclave.core.errors import invalid_argument
from teaclave.functions.builtin import Builtin, Usize
from teaclave.functions.runtime import Runtime
from teaclave.functions.streams import decoded_blocks

INPUT, OUTPUT = "input_data", "output_data"
_U32 = re.compile(r"\+?[0-9]+")
_U32_MAX = 2**32 - 1


@dataclass(frozen=True)
class PrivateJoinAndComputeArguments:
    """The number of parties (at least two)."""

    num_user: Usize


def input_names(arguments: PrivateJoinAndComputeArguments) -> tuple[str, ...]:
    """``input_data0`` … for each party."""
    return tuple(f"{INPUT}{i}" for i in range(arguments.num_user))


def output_names(arguments: PrivateJoinAndComputeArguments) -> tuple[str, ...]:
    """``output_data0`` … for each party."""
    return tuple(f"{OUTPUT}{i}" for i in range(arguments.num_user))


def _amounts(runtime: Runtime, name: str) -> dict[str, int]:
    """Identity → amount of the valid lines of input ``name``."""
    amounts: dict[str, int] = {}
    for text in decoded_blocks(runtime.open_input(name), name):  # blocks of whole lines
        for line in text.split("\n"):
            _parse(line, amounts)
    return amounts


def _parse(line: str, amounts: dict[str, int]) -> None:
    pair = line.strip()
    if len(pair.encode()) < 3 or pair.count(":") != 1:
        return
    identity, amount = (part.strip() for part in pair.split(":"))
    if _U32.fullmatch(amount) and int(amount) <= _U32_MAX:
        amounts[identity] = int(amount)


def private_join_and_compute(arguments: PrivateJoinAndComputeArguments, runtime: Runtime) -> str:
    """Write the common identities' sums to every party; returns "<n> users join …"."""
    if arguments.num_user < 2:
        raise invalid_argument("The demo requires at least two parties!")
    names = input_names(arguments)
    totals = _amounts(runtime, names[0])
    for name in names[1:]:
        amounts = _amounts(runtime, name)
        totals = {key: total + amounts[key] for key, total in totals.items() if key in amounts}
    result = "".join(f"{identity}, {totals[identity]}\n" for identity in sorted(totals)).encode()
    for name in output_names(arguments):
        with runtime.create_output(name) as output:
            output.write(result)
    return f"{arguments.num_user} users join the task in total."


BUILTIN = Builtin(
    "builtin-private-join-and-compute",
    PrivateJoinAndComputeArguments,
    private_join_and_compute,
    inputs=input_names,
    outputs=output_names,
)
