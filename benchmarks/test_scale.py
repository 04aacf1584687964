"""Plain GAL at scale: T=10, M=8 parties, 80 features, linear learners, n = 100k and 1M rows.

Targets (issue 13, a 2-core machine): n=100k in at most 1.5 s; n=1M in at most 10 s and
1.5 GiB peak RSS; time linear in n. Run (the two sizes in one session, smallest first, so the
ratio time(10n)/time(n) comes from one run)::

    flock /tmp/heavy.lock .venv/bin/python -m pytest benchmarks/test_scale.py --benchmark-only -s

Each size runs 3 times, each run in a fresh process (``fresh_run.FreshRun``: the worker imports
securegal and builds the synthetic table before the clock starts), so its peak RSS is that run's
alone. The time covers the federation's setup, the T rounds and the predictions on the
validation and test rows (no PSI: see gal_job.py), not making the table. ``extra_info`` holds
the accuracy, the median CPU time of a run, each run's peak RSS (the worker's whole life: the
table, 8n doubles per feature column, and the imported libraries included) and the largest, the
RSS before the run (``baseline_mib``) and, on the larger size, the ratio of the medians.
See benchmarks/README.md for the numbers.
"""
import statistics

import pytest

from fresh_run import FreshRun
from gal_job import record_size

N_FEATURES, PARTIES, ROUNDS = 80, 8, 10
SIZES = (100_000, 1_000_000)
REPEATS = 3

_medians: dict[int, float] = {}


@pytest.mark.slow
@pytest.mark.parametrize("n_rows", SIZES, ids=[f"n={n:,}" for n in SIZES])
def test_scale_t10_m8_linear(benchmark, n_rows):
    runs, workers = [], []

    def start():  # untimed: the previous worker has exited, a new one has built its table
        for worker in workers:
            worker.close()
        workers[:] = [FreshRun(n_rows, N_FEATURES, PARTIES, ROUNDS)]
        return (workers[0],), {}

    benchmark.pedantic(lambda worker: runs.append(worker.run()), setup=start, rounds=REPEATS, iterations=1)
    workers[0].close()
    accuracies = {run["accuracy"] for run in runs}
    assert len(accuracies) == 1, f"the runs disagree: {accuracies}"  # the job is deterministic
    accuracy = accuracies.pop()
    peaks = [run["peak_rss_mib"] for run in runs]
    info = record_size(benchmark, _medians, n_rows, accuracy=accuracy,
                       cpu_seconds=statistics.median(run["cpu_seconds"] for run in runs),
                       peak_rss_mib=max(peaks), peak_rss_runs_mib=peaks,
                       baseline_mib=max(run["baseline_mib"] for run in runs),
                       data_mib=n_rows * N_FEATURES * 8 / 2**20)
    median, smaller = info["median_seconds"], n_rows // 10
    times = ", ".join(f"{run['seconds']:.2f}" for run in runs)
    print(f"\nscale n={n_rows:,}: median {median:.2f} s over {REPEATS} fresh processes "
          f"({times} s), CPU {info['cpu_seconds']:.2f} s per run, "
          f"accuracy {accuracy:.4f}%, peak RSS {max(peaks):.0f} MiB (runs {', '.join(f'{p:.0f}' for p in peaks)}; "
          f"{info['baseline_mib']:.0f} MiB before the run, table {info['data_mib']:.0f} MiB), "
          f"load {info['load_average']:.2f}"
          + (f", time({n_rows:,}) / time({smaller:,}) = {info['ratio_to_n_over_10']:.1f}" if smaller in _medians else ""))
    assert accuracy > 80.0  # chance is 50% and the Bayes rate about 85%: GAL must actually have trained
