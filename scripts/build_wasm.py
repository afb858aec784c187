"""Build the WebAssembly payloads: ``python scripts/build_wasm.py OUTDIR [--native]``.

Every ``payloads/wasm/*.c`` becomes ``OUTDIR/<name>.wasm``: a self-contained
wasm32 module (no libc, no WASI) that imports only the Teaclave file functions
from module ``env`` and exports ``entrypoint`` and its linear memory as
``memory`` (reference §6.6). With ``--native`` (``native=True``) each source is
also built for the host as ``OUTDIR/lib<name>.so`` (its pure kernel, for
ctypes; the file I/O entry point is wasm-only).

The imports are declared with ``import_module``/``import_name`` in
``teaclave_context.h``, so the link needs no ``--allow-undefined``: any other
undefined symbol (e.g. a libc call the compiler emitted) fails the build.
Builds are reproducible: no debug information or build paths, and the same
sources give the same bytes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "payloads" / "wasm"
MISSING = "install clang and lld: make system-packages"

STACK_BYTES = 163840  # the WAMR executor's stack size (reference §6.6)
COMMON_FLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-ffile-prefix-map={ROOT}=.")
WASM_FLAGS = (
    "--target=wasm32",
    "-nostdlib",
    "-mbulk-memory",  # memcpy/memmove become memory.copy, not libc calls
    "-Wl,--no-entry",
    "-Wl,--export=entrypoint",
    f"-Wl,-z,stack-size={STACK_BYTES}",
    "-Wl,--stack-first",  # a stack overflow traps instead of overwriting data
)
NATIVE_FLAGS = ("-shared", "-fPIC", "-Wl,--no-undefined", "-Wl,--build-id=none")


class BuildError(RuntimeError):
    """A tool is missing or a payload does not compile."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"{name} not found; {MISSING}")
    return path


def _compile(clang: str, source: Path, target: Path, flags: tuple[str, ...]) -> None:
    """Compiles ``source`` to ``target`` (written whole, then moved into place)."""
    with tempfile.TemporaryDirectory(prefix="teaclave-wasm-") as tmp:
        scratch = Path(tmp) / target.name
        command = [clang, *COMMON_FLAGS, *flags, source.name, "-o", str(scratch)]
        done = subprocess.run(
            command, cwd=source.parent, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BuildError(f"{source.name}: {' '.join(command)}\n{done.stderr.strip()}")
        shutil.move(scratch, target)


def sources() -> list[Path]:
    """The payload sources, in name order."""
    return sorted(SOURCES.glob("*.c"))


def build(outdir: Path, native: bool = False) -> dict[str, Path]:
    """Builds every payload into ``outdir``: ``{name: path}`` (``lib<name>`` keys if native)."""
    clang = _tool("clang")
    _tool("wasm-ld")
    outdir.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for source in sources():
        wasm = outdir / f"{source.stem}.wasm"
        _compile(clang, source, wasm, WASM_FLAGS)
        built[source.stem] = wasm
        if native:
            library = outdir / f"lib{source.stem}.so"
            _compile(clang, source, library, NATIVE_FLAGS)
            built[f"lib{source.stem}"] = library
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("outdir", type=Path, help="where to write <name>.wasm (and lib<name>.so)")
    parser.add_argument("--native", action="store_true", help="also build lib<name>.so natively")
    args = parser.parse_args(argv)
    try:
        built = build(args.outdir, native=args.native)
    except BuildError as error:
        print(f"build_wasm: {error}", file=sys.stderr)
        return 1
    for path in built.values():
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
