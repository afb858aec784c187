"""``python -m teaclave.services NAME --config PATH [--data-dir DIR]``: run one service.

SIGINT and SIGTERM stop the service cleanly. With ``--supervised`` (used by
the supervisor) the service also stops when its stdin pipe closes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from teaclave.config import SERVICES, ConfigError, load_config
from teaclave.core.errors import TeaclaveError
from teaclave.services.supervisor import (
    configure_logging,
    run_service,
    stop_on_signals,
    watch_parent,
)


def main(argv: list[str] | None = None) -> int:
    """Run the named service until a signal; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m teaclave.services", description=__doc__)
    parser.add_argument("name", choices=SERVICES, help="the service to run")
    parser.add_argument("--config", help="the TOML config file (default: built-in defaults)")
    parser.add_argument("--data-dir", help="override the config's data directory")
    parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_logging(args.name)
    log = logging.getLogger(f"teaclave.services.{args.name}")
    stop = threading.Event()
    try:
        config = load_config(args.config)
        if args.data_dir:
            config = config.with_data_dir(args.data_dir)
        configure_logging(args.name, json_lines=config.observability.log_format == "json")
        if args.supervised:
            watch_parent(stop)
        with stop_on_signals(stop):
            run_service(args.name, config, stop)
    except (ConfigError, TeaclaveError) as exc:
        log.error("%s", exc)
        return 1
    except Exception:
        log.exception("%s crashed", args.name)
        return 1
    log.info("%s stopped", args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
