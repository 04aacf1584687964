"""ECDH private set intersection (pytest-benchmark), both roles with two worker processes.

Run: ``pytest benchmarks/test_psi.py --benchmark-only``; ``securegal bench psi`` runs 10k, 100k
and 1M per side, each in a fresh process, with peak memory. Targets (issue 11, this 2-core
machine): 100k x 100k in at most 30 s; 1M x 1M in at most 5 min under 1 GiB.
"""
import pytest

from securegal.align import Workers, align_in_process
from securegal.bench.psi import make_ids


@pytest.mark.parametrize("n", [10_000])
def test_psi_both_roles(benchmark, n):
    owner, party = (ids.tolist() for ids in make_ids(n, 0.8, 0))
    with Workers(2) as workers:
        mine, _ = benchmark.pedantic(lambda: align_in_process(owner, party, "bench", workers), rounds=3,
                                     iterations=1, warmup_rounds=0)
    assert int(mine.matched.sum()) == int(0.8 * n)
