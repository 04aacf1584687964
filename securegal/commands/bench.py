"""``securegal bench crypto``: plaintext vs CKKS vs Paillier for one GAL round of one party."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError


def _size(text: str) -> tuple[int, int]:
    try:
        n, p = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are NxP, e.g. 4096x8; got {text!r}") from None
    from ..bench.crypto import check_size

    try:
        return check_size(n, p)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub) -> None:
    p = sub.add_parser("bench", description="Benchmarks that run from the command line.")
    what = p.add_subparsers(dest="bench", required=True, metavar="WHAT")
    c = what.add_parser("crypto", help="per-round cost of plaintext, CKKS and Paillier residuals",
                        description="Time one GAL round of one party with plaintext, CKKS and Paillier "
                                    "residuals, at several sizes.")
    c.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON to this file")
    c.add_argument("--sizes", type=_size, nargs="+", metavar="NxP",
                   help="rows x features to measure (default: 4096x8 4096x32 16384x32 65536x16)")
    c.add_argument("--repeats", type=int, default=5, metavar="N", help="timed repetitions (median reported)")
    c.add_argument("--paillier-n", type=int, default=64, metavar="N",
                   help="rows at which Paillier is measured before linear extrapolation (0 skips Paillier)")
    c.set_defaults(func=run)


def run(args) -> int:
    from ..bench import crypto

    if args.repeats < 1 or args.paillier_n < 0:
        raise ConfigError(f"--repeats must be >= 1 and --paillier-n >= 0, got {args.repeats}, {args.paillier_n}")
    rows = crypto.run(args.sizes or crypto.SIZES, args.repeats, args.paillier_n)
    print(crypto.table(rows))  # ends with the legend of its columns
    if args.json:
        crypto.write_json(rows, args.json)
        print(f"wrote {args.json}")
    return 0
