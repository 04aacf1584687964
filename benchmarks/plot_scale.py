"""Plot wall time against n for plain and CKKS GAL from the scale benchmarks' JSON output.

    .venv/bin/python -m pytest benchmarks/test_ckks_scale.py --benchmark-only --benchmark-json=ckks.json
    .venv/bin/python -m pytest benchmarks/test_scale.py --benchmark-only --benchmark-json=scale.json
    .venv/bin/python benchmarks/plot_scale.py ckks.json scale.json --out docs/scale.png

Each point is a benchmark's median with its min-max range as an error bar; with ``--cpu``, the
CPU time per run that the suites record (steadier than wall time when other jobs share the cores).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def series(paths: list[Path], cpu: bool = False) -> dict[str, list[tuple[int, float, float, float]]]:
    """label -> [(n, median, min, max)] from pytest-benchmark JSON files (``cpu``: the CPU
    seconds per run, as median, min and max alike)."""
    out = defaultdict(list)
    for path in paths:
        for bench in json.loads(path.read_text())["benchmarks"]:
            info, stats = bench["extra_info"], bench["stats"]
            if "n_rows" not in info:
                continue
            residuals = info.get("residuals", "plain")
            shape = "M=4, 32 features" if bench["name"].startswith("test_ckks_against_plain") else "M=8, 80 features"
            if cpu:
                out[f"{residuals}, {shape}"].append((info["n_rows"], *[info["cpu_seconds"]] * 3))
            else:
                out[f"{residuals}, {shape}"].append((info["n_rows"], stats["median"], stats["min"], stats["max"]))
    return {label: sorted(points) for label, points in out.items()}


def plot(data: dict, out: Path, ylabel: str = "wall time per run, s (median, min-max)") -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, points in sorted(data.items()):
        n, med, lo, hi = zip(*points)
        ax.errorbar(n, med, yerr=[[m - a for m, a in zip(med, lo)], [b - m for m, b in zip(med, hi)]],
                    marker="o", capsize=3, label=label, linestyle="--" if label.startswith("ckks") else "-")
    ax.set(xscale="log", yscale="log", xlabel="rows n", ylabel=ylabel,
           title="GAL, T=10, linear learners, in process (2-core shared VM)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", type=Path, help="pytest-benchmark JSON files")
    parser.add_argument("--out", type=Path, default=Path("docs/scale.png"))
    parser.add_argument("--cpu", action="store_true", help="plot CPU time per run instead of wall time")
    args = parser.parse_args()
    data = series(args.json, args.cpu)
    if not data:
        raise SystemExit("no scale benchmarks (with extra_info n_rows) in " + ", ".join(map(str, args.json)))
    plot(data, args.out, "CPU time per run, s" if args.cpu else "wall time per run, s (median, min-max)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
