"""python -m localdev.partner_center_sim --port PORT --state-dir DIR [--customers N]."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .server import ServerOptions, run


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m localdev.partner_center_sim",
        description="A stateful Partner Center simulator over HTTPS.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=0, help="seed N customers on first start")
    parser.add_argument("--reseller-id", default=None, help="indirect reseller of seeded customers")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-persist", action="store_true", help="keep state in memory only")
    parser.add_argument(
        "--settings",
        type=json.loads,
        default=None,
        help="initial behaviour settings as JSON, e.g. '{\"customerProvisioningSeconds\": 5}'",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    run(
        ServerOptions(
            port=args.port,
            state_dir=args.state_dir,
            customers=args.customers,
            host=args.host,
            reseller_id=args.reseller_id,
            persist=not args.no_persist,
            settings=args.settings,
        )
    )


if __name__ == "__main__":
    main()
