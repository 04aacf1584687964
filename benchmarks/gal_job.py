"""The GAL job the scale benchmarks time: a synthetic binary task, linear learners, embedded.

Shared by ``test_scale.py`` (plain at 100k and 1M) and ``test_ckks_scale.py`` (CKKS against
plain). Row alignment is off (``EmbeddedDeployment(psi=False)``): the parties are column blocks
of one table, and PSI is timed by ``test_psi.py``.
"""
from __future__ import annotations

import resource
import statistics

import numpy as np

from securegal.data.datasets import Dataset
from securegal.data.split import split_rows
from securegal.deploy.embedded import EmbeddedDeployment
from securegal.deploy.federation import GalJob, TargetScaler
from securegal.privacy.plan import PrivacyPlan


def synthetic(n: int, d: int, seed: int = 0) -> Dataset:
    """Binary labels from a noisy linear score that uses every party's columns."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    score = X @ rng.normal(size=d) / np.sqrt(d) + 0.5 * rng.normal(size=n)
    return Dataset("synthetic", X, (score > 0).astype(np.int64), "classification", "cross_entropy", 2)


def run_once(data: Dataset, parties: int, rounds: int = 10, residuals: str = "plain") -> float:
    """One embedded GAL run as ``securegal.train`` builds it (every message through the wire
    codec, no run directory): setup, the rounds, predictions on validation and test rows. The
    test accuracy in %."""
    split = split_rows(data, seed=0, test_fraction=0.2)
    scaler = TargetScaler.fit(data, data.y[split.train])
    deployment = EmbeddedDeployment(psi=False)
    job = GalJob.from_plan(PrivacyPlan(residuals=residuals), dataset=data, n_train=len(split.train), parties=parties,
                           rounds=rounds, learner="linear", seed=0, scaler=scaler)
    owner = deployment.build(job, data, split, deployment.blocks(data, parties))
    return deployment.run(owner, data, split, scaler).test


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def load_average() -> float:
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def record_size(benchmark, medians: dict, n_rows: int, **info) -> dict:
    """The median of ``benchmark``'s runs at ``n_rows`` rows, kept in ``medians``, with ``info``, the
    load average and, when ``n_rows // 10`` ran earlier in this process, the ratio to its median;
    stored in the benchmark's ``extra_info`` and returned."""
    median = statistics.median(benchmark.stats.stats.data)
    medians[n_rows] = median
    info = dict(n_rows=n_rows, median_seconds=median, load_average=load_average(), **info)
    if n_rows // 10 in medians:
        info["ratio_to_n_over_10"] = median / medians[n_rows // 10]
    benchmark.extra_info.update(info)
    return info
