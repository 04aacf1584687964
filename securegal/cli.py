"""``securegal`` command line: train | ... (each subcommand lives in securegal/commands/).

Exit codes: 0 success; 1 unexpected internal error; 2 invalid input or settings (one-line
message, no traceback); 3 the run stopped early (e.g. privacy budget refused a release), with
what was learned so far saved.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import SecuregalError

# Subcommand modules: each defines ``add_parser(subparsers)`` which sets ``func`` on its parser.
COMMANDS = ("train", "reproduce", "bench", "audit", "party", "certs")

EXIT_OK, EXIT_INTERNAL, EXIT_INVALID, EXIT_STOPPED = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="securegal", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"securegal.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or EXIT_OK)
    except (SecuregalError, ValueError, TypeError, OSError) as exc:
        print(f"securegal: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("securegal: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
