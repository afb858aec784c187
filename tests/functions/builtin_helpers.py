"""Running a built-in by name over the in-memory runtime."""

import json

from teaclave.functions import registry
from teaclave.functions.runtime import MemoryRuntime


def call(
    name: str, arguments: dict[str, object], inputs: dict[str, bytes], outputs: tuple[str, ...] = ()
) -> tuple[str, dict[str, bytes]]:
    """The summary and every output ``name`` wrote (missing outputs fail the test)."""
    runtime = MemoryRuntime(inputs, frozenset(outputs))
    summary = registry.lookup(name).invoke(json.dumps(arguments), runtime)
    written = {output: runtime.output(output) for output in outputs}
    missing = [output for output, data in written.items() if data is None]
    assert not missing, f"outputs not written: {missing}"
    return summary, {output: data for output, data in written.items() if data is not None}
