"""``make bench`` / ``python -m bench [SUITE ...] [--quick]``: run benchmark suites.

Each suite is a module of this package with ``run(quick) -> dict``; its figures
include ratios to a baseline measured in the same run. Results are written to
``bench/results/latest.json`` (one key per suite); ``docs/benchmarks.md``
records them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

SUITES = ("platform", "observability", "zygote", "crypto", "memory", "builtins", "sandbox", "wasm")
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "suites",
        nargs="*",
        choices=[[], *SUITES],
        metavar="SUITE",
        help=f"suites to run (default: all of {', '.join(SUITES)})",
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    args = parser.parse_args()
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.suites or SUITES:
        print(f"== {name}", flush=True)
        figures = importlib.import_module(f"bench.{name}").run(args.quick)
        results[name] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), **figures}
        json.dump(figures, sys.stdout, indent=2)
        print(flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
