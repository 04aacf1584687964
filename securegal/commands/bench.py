"""``securegal bench crypto|psi``: plaintext vs CKKS vs Paillier for one GAL round of one party;
ECDH private set intersection at 10k, 100k and 1M IDs per side."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..bench.lock import one_benchmark_at_a_time
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
                   help="rows at which Paillier is measured before linear extrapolation (0 skips Paillier; "
                        "at most 1024)")
    c.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    c.set_defaults(func=run)
    s = what.add_parser("psi", help="private set intersection at 10k, 100k and 1M IDs per side",
                        description="Time ECDH private set intersection between a label owner and one "
                                    "feature party, each size in a fresh process, with peak memory.")
    s.add_argument("--sizes", type=_count, nargs="+", default=[10_000, 100_000, 1_000_000], metavar="N",
                   help="IDs per side; 100k, 1M and 1_000_000 forms are accepted (default: 10k 100k 1M)")
    s.add_argument("--processes", type=_count, default=2, metavar="N",
                   help="worker processes shared by both roles (default: 2)")
    s.add_argument("--overlap", type=float, default=0.8, metavar="F",
                   help="fraction of IDs both sides hold (default: 0.8)")
    s.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON to this file")
    s.set_defaults(func=run_psi)


def _count(text: str) -> int:
    t = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        value = int(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive count like 100000, 100k or 1M; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive count, got {text!r}")
    return value


def _json_target(path: Path | None) -> None:
    """Refuse a --json path that cannot be written before anything is measured (the directory is
    created, as ``--out`` is)."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"--json {str(path)!r} is a directory; name a file in it")
    if path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"--json {str(path)!r}: {str(path.parent)!r} is not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass  # the result is written there after the benchmark: a directory that refuses it fails now
    except OSError as exc:
        raise ConfigError(f"--json {str(path)!r} cannot be written ({exc.strerror or exc})") from None


def run_psi(args) -> int:
    from ..bench import psi

    if not 0.0 <= args.overlap <= 1.0:
        raise ConfigError(f"--overlap must be within [0, 1], got {args.overlap}")
    _json_target(args.json)
    with one_benchmark_at_a_time():
        rows = psi.run(args.sizes, args.processes, args.overlap)
    print(psi.table(rows))
    if args.json:
        psi.write_json(rows, args.json)
        print(f"wrote {args.json}")
    return 0


def run(args) -> int:
    from ..bench import crypto

    if not 1 <= args.repeats <= crypto.MAX_REPEATS or not 0 <= args.paillier_n <= crypto.MAX_PAILLIER_N:
        raise ConfigError(f"--repeats must be in 1..{crypto.MAX_REPEATS} and --paillier-n in "
                          f"0..{crypto.MAX_PAILLIER_N}, got {args.repeats}, {args.paillier_n}")
    _json_target(args.json)
    with one_benchmark_at_a_time():
        rows = crypto.run(args.sizes or crypto.SIZES, args.repeats, args.paillier_n, bar=args.progress)
    print(crypto.table(rows))  # ends with the legend of its columns
    if args.json:
        crypto.write_json(rows, args.json)
        print(f"wrote {args.json}")
    return 0
