"""Plain GAL at scale: T=10, M=8 parties, 80 features, linear learners, n = 100k and 1M rows.

Targets (issue 13, a 2-core machine): n=100k in at most 1.5 s; n=1M in at most 10 s and
1.5 GiB peak RSS; time linear in n. Run (the two sizes in one process, smallest first, so the
ratio time(10n)/time(n) comes from one run)::

    flock /tmp/heavy.lock .venv/bin/python -m pytest benchmarks/test_scale.py --benchmark-only -s

Each size is timed 3 times (median). The time covers the federation's setup, the T rounds and
the prediction on the test rows, not making the synthetic table. ``extra_info`` holds the
accuracy, the CPU time, the process's peak RSS after the size ran (it includes the table, 8n
doubles per feature column, and the imported libraries) and, on the larger size, the ratio.
See benchmarks/README.md for the numbers.
"""
import resource
import statistics
import time

import numpy as np
import pytest

from securegal.data.datasets import Dataset
from securegal.data.split import split_rows
from securegal.deploy.embedded import EmbeddedDeployment
from securegal.deploy.federation import GalJob, TargetScaler
from securegal.privacy.plan import PrivacyPlan

N_FEATURES, PARTIES, ROUNDS = 80, 8, 10
SIZES = (100_000, 1_000_000)
REPEATS = 3

_medians: dict[int, float] = {}


def synthetic(n: int, d: int, seed: int = 0) -> Dataset:
    """Binary labels from a noisy linear score that uses every party's columns."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    score = X @ rng.normal(size=d) / np.sqrt(d) + 0.5 * rng.normal(size=n)
    return Dataset("synthetic", X, (score > 0).astype(np.int64), "classification", "cross_entropy", 2)


def run_once(data: Dataset) -> float:
    """One embedded plain GAL run, as ``securegal.train`` builds it (every message through the
    wire codec, no run directory); the test accuracy in %."""
    split = split_rows(data, seed=0, test_fraction=0.2)
    scaler = TargetScaler.fit(data, data.y[split.train])
    deployment = EmbeddedDeployment()
    job = GalJob.from_plan(PrivacyPlan(), dataset=data, n_train=len(split.train), parties=PARTIES, rounds=ROUNDS,
                           learner="linear", seed=0, scaler=scaler)
    owner = deployment.build(job, data, split, deployment.blocks(data, PARTIES))
    return deployment.run(owner, data, split, scaler).test


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@pytest.mark.slow
@pytest.mark.parametrize("n_rows", SIZES, ids=[f"n={n:,}" for n in SIZES])
def test_scale_t10_m8_linear(benchmark, n_rows):
    data = synthetic(n_rows, N_FEATURES)
    cpu = time.process_time()
    accuracy = benchmark.pedantic(run_once, args=(data,), rounds=REPEATS, iterations=1)
    cpu = (time.process_time() - cpu) / REPEATS
    median = statistics.median(benchmark.stats.stats.data)
    _medians[n_rows] = median
    info = dict(n_rows=n_rows, accuracy=accuracy, median_seconds=median, cpu_seconds=cpu,
                peak_rss_mib=_peak_rss_mib(), data_mib=data.X.nbytes / 2**20)
    smaller = n_rows // 10
    if smaller in _medians:
        info["ratio_to_n_over_10"] = median / _medians[smaller]
    benchmark.extra_info.update(info)
    print(f"\nscale n={n_rows:,}: median {median:.2f} s over {REPEATS} runs, CPU {cpu:.2f} s per run, "
          f"accuracy {accuracy:.2f}%, process peak RSS {info['peak_rss_mib']:.0f} MiB "
          f"(table {info['data_mib']:.0f} MiB)"
          + (f", time({n_rows:,}) / time({smaller:,}) = {info['ratio_to_n_over_10']:.1f}" if smaller in _medians else ""))
    assert accuracy > 80.0  # chance is 50% and the Bayes rate about 85%: GAL must actually have trained
