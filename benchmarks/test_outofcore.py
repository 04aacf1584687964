"""Out of core: plain GAL with every feature party streaming its Parquet table (issue 13, item 2).

T=10, M=8, 80 features (10 per organization), linear learners, n = 100k, 1M and 10M rows. The
label owner holds its own 10 columns and the labels in memory; each of the 7 feature parties
serves a Parquet file of its 10 columns through :class:`~securegal.data.parquet_table.ParquetTable`
(batches of 65,536 rows; ``psi=False``: the files hold the label owner's rows in its order, as in
``test_scale.py``). Target: 10M within 8 GiB peak RSS, time linear in n. Run under the heavy-job
lock (the three sizes in one process, smallest first, so the ratios come from one run; about
7 GB of Parquet under ``--basetemp`` or the system temp directory, removed at the end)::

    flock /tmp/heavy.lock .venv/bin/python -m pytest benchmarks/test_outofcore.py --benchmark-only -s

``OUTOFCORE_SIZES=100000,1000000`` runs a subset. The time covers the federation's setup (each
party's pass for its Gram matrix), the T rounds (two passes per party and round: ``Phi^T r``,
then the train predictions) and the predictions on the test rows (one pass); opening the
tables (reading the IDs and one pass checking every cell) is reported apart (``open_seconds``),
writing them is not timed. The tables are written by a child process (so whatever the writer
leaves in the allocators is not this process's), and peak RSS is this process's high-water mark
from the moment the tables are opened (reset through ``/proc/self/clear_refs``): it includes the
imported libraries (about 500 MiB) and the label owner's own block and labels.
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gal_job import record_size
from securegal.data.datasets import Dataset
from securegal.data.parquet_table import ParquetTable
from securegal.data.split import split_rows
from securegal.deploy.embedded import EmbeddedDeployment
from securegal.deploy.federation import GalJob, TargetScaler
from securegal.privacy.plan import PrivacyPlan

N_FEATURES, PARTIES, ROUNDS = 80, 8, 10
SIZES = tuple(int(s) for s in os.environ.get("OUTOFCORE_SIZES", "100000,1000000,10000000").split(","))
REPEATS = {10_000_000: 1}  # 3 otherwise
CHUNK_ROWS = 1 << 20
ROW_GROUP_ROWS = 1 << 18

_medians: dict[int, float] = {}


def write_tables(directory, n: int, d: int, parties: int, seed: int = 0) -> dict:
    """One Parquet file per feature party and the label owner's block and binary labels (from a
    noisy linear score of all d columns, as ``gal_job.synthetic``) as ``owner.npy`` and
    ``labels.npy``, written CHUNK_ROWS rows at a time: never more than a chunk of the whole table
    in memory. The feature parties' paths by name."""
    rng = np.random.default_rng(seed)
    width = d // parties
    beta = rng.normal(size=d) / np.sqrt(d)
    own = np.empty((n, width))
    y = np.empty(n, dtype=np.int64)
    names = [f"party{i}" for i in range(1, parties)]
    paths = {name: directory / f"{name}.parquet" for name in names}
    schema = pa.schema([(f"x{j}", pa.float64()) for j in range(width)])
    writers = {name: pq.ParquetWriter(paths[name], schema, use_dictionary=False) for name in names}
    try:
        for start in range(0, n, CHUNK_ROWS):
            X = rng.normal(size=(min(CHUNK_ROWS, n - start), d))
            y[start:start + len(X)] = (X @ beta + 0.5 * rng.normal(size=len(X)) > 0)
            own[start:start + len(X)] = X[:, :width]
            for i, name in enumerate(names, start=1):
                block = X[:, i * width:(i + 1) * width]
                writers[name].write_table(pa.table([np.ascontiguousarray(block[:, j]) for j in range(width)],
                                                   schema=schema), row_group_size=ROW_GROUP_ROWS)
    finally:
        for writer in writers.values():
            writer.close()
    np.save(directory / "owner.npy", own)
    np.save(directory / "labels.npy", y)
    return paths


def tables_in_child(directory, n: int, d: int, parties: int) -> tuple[Dataset, dict]:
    """:func:`write_tables` in a fresh process; the label owner's dataset and the parties' paths."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        paths = pool.submit(write_tables, directory, n, d, parties).result()
    own, y = np.load(directory / "owner.npy"), np.load(directory / "labels.npy")
    return Dataset("synthetic", own, y, "classification", "cross_entropy", 2), paths


def run_streamed(data: Dataset, tables: dict, parties: int, rounds: int) -> float:
    """One embedded GAL run with every feature party streaming its table; the test accuracy in %."""
    split = split_rows(data, seed=0, test_fraction=0.2)
    scaler = TargetScaler.fit(data, data.y[split.train])
    deployment = EmbeddedDeployment(tables, psi=False)
    job = GalJob.from_plan(PrivacyPlan(), dataset=data, n_train=len(split.train), parties=parties, rounds=rounds,
                           learner="linear", seed=0, scaler=scaler)
    owner = deployment.build(job, data, split, deployment.blocks(data, parties))
    return deployment.run(owner, data, split, scaler).test


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM (Linux >= 4.0)


def peak_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
@pytest.mark.parametrize("n_rows", SIZES, ids=[f"n={n:,}" for n in SIZES])
def test_outofcore_t10_m8_linear(benchmark, tmp_path, n_rows):
    data, paths = tables_in_child(tmp_path, n_rows, N_FEATURES, PARTIES)
    file_mib = sum(p.stat().st_size for p in paths.values()) / 2**20
    try:
        reset_peak_rss()
        opened = time.perf_counter()
        tables = {name: ParquetTable.open(path, None) for name, path in paths.items()}
        opened = time.perf_counter() - opened
        repeats = REPEATS.get(n_rows, 3)
        before = resource.getrusage(resource.RUSAGE_SELF)
        accuracy = benchmark.pedantic(run_streamed, args=(data, tables, PARTIES, ROUNDS), rounds=repeats,
                                      iterations=1)
        after = resource.getrusage(resource.RUSAGE_SELF)
        user, system = ((getattr(after, f) - getattr(before, f)) / repeats for f in ("ru_utime", "ru_stime"))
        faults = (after.ru_minflt - before.ru_minflt) / repeats
        cpu = user + system
        peak = peak_rss_mib()
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    info = record_size(benchmark, _medians, n_rows, repeats=repeats, accuracy=accuracy, cpu_seconds=cpu,
                       user_seconds=user, system_seconds=system, minor_faults=faults, open_seconds=opened, peak_rss_mib=peak, parquet_mib=file_mib,
                       owner_block_mib=data.X.nbytes / 2**20)
    median, smaller = info["median_seconds"], n_rows // 10
    print(f"\nout of core n={n_rows:,}: median {median:.2f} s over {repeats} runs, CPU {cpu:.2f} s per run "
          f"(user {user:.2f} s, system {system:.2f} s, {faults / 1e3:.0f}k minor page faults), "
          f"open {opened:.2f} s, accuracy {accuracy:.2f}%, peak RSS {peak:.0f} MiB (Parquet {file_mib:.0f} MiB, "
          f"label owner's block {info['owner_block_mib']:.0f} MiB), load {info['load_average']:.1f}"
          + (f", time({n_rows:,}) / time({smaller:,}) = {info['ratio_to_n_over_10']:.1f}" if smaller in _medians else ""))
    assert accuracy > 80.0  # chance is 50% and the Bayes rate about 85%: GAL must actually have trained
    if n_rows >= 10_000_000:
        assert peak <= 8 * 1024, f"peak RSS {peak:.0f} MiB over the 8 GiB target"
