"""The C payloads of ``payloads/wasm``, compiled to wasm32 by ``scripts/build_wasm.py``."""

from pathlib import Path

from scripts import build_wasm


def build(outdir: Path) -> dict[str, bytes]:
    """Every payload, compiled into ``outdir``: name → module bytes."""
    return {name: path.read_bytes() for name, path in build_wasm.build(outdir).items()}
