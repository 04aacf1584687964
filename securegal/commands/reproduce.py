"""``securegal reproduce``: the paper's tables (final-round scores) and the noisy-party experiment."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import ConfigError


def add_parser(sub) -> None:
    from ..experiments import reproduce as rp

    p = sub.add_parser("reproduce", description="Reproduce the GAL paper's tables (Joint, Alone, GAL-uniform, "
                       "GAL; final-round test scores) and the noisy-party experiment.")
    p.add_argument("--datasets", metavar="NAME,...", help="comma-separated subset of: "
                   + ", ".join(e.dataset for e in rp.LINEAR_TABLE + rp.IMAGE_TABLE) + " (default: all)")
    p.add_argument("--seeds", type=int, default=4, metavar="N", help="seeds 0..N-1 (split and learners)")
    p.add_argument("--no-images", action="store_true", help="skip MNIST-5k with the CNN (the slow part)")
    p.add_argument("--no-noisy", action="store_true", help="skip the noisy-party experiment")
    p.add_argument("--sigma", type=float, default=1.0, metavar="STD", help="noise std of the noisy parties")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs in parallel processes")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads per process (more threads than free cores slows the CNN badly)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write all scores to this JSON file")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..experiments import reproduce as rp

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    if args.jobs < 1 or args.threads < 1:
        raise ConfigError(f"--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}")
    if not args.sigma > 0:
        raise ConfigError(f"--sigma must be > 0, got {args.sigma}")
    names = [n.strip() for n in args.datasets.split(",") if n.strip()] if args.datasets else None
    tables = rp.LINEAR_TABLE + (() if args.no_images else rp.IMAGE_TABLE)
    experiments = rp.select(tables, names)
    noisy = () if args.no_noisy else rp.select(rp.NOISY_TABLE, names)
    if args.json is not None:
        if args.json.is_dir():
            raise ConfigError(f"--json {str(args.json)!r} is a directory")
        args.json.parent.mkdir(parents=True, exist_ok=True)  # fail before the runs, not after
    seeds = list(range(args.seeds))

    def progress(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    rp.limit_torch_threads(args.threads)
    started = time.perf_counter()
    rows = rp.run_table(experiments, seeds, progress, args.jobs, args.threads)
    noisy_rows = rp.run_noisy(noisy, seeds, args.sigma, progress, args.jobs, args.threads)
    checks = rp.acceptance(rows, noisy_rows)
    print(f"GAL reproduction: final-round test scores, mean (std) over seeds {seeds}, 80/20 split, T=10")
    print("metric: mad = mean absolute deviation (lower is better), accuracy in %")
    print(rp.format_table(rows))
    if noisy_rows:
        print()
        print(rp.format_noisy(noisy_rows, args.sigma))
    print()
    print("acceptance (issue 2):")
    print(rp.format_checks(checks))
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json is not None:
        from ..files import write_json_atomic

        write_json_atomic(args.json, {"seeds": seeds, "table": [r.as_dict() for r in rows],
                                      "noisy": {"sigma": args.sigma, "rows": [r.as_dict() for r in noisy_rows]},
                                      "acceptance": [c.__dict__ for c in checks]})
    return 0
