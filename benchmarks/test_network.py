"""What the network costs: per-round overhead of gRPC + mutual TLS on loopback against the
embedded (in-process) transport, and a load run (M=8, n=100,000, T=10) with the label owner's
peak memory.

    PYTHONPATH=. python -m pytest -q benchmarks/test_network.py --benchmark-only -s

Every party is its own process on 127.0.0.1 with fresh certificates. Both sides write full
transcripts, so the difference is the transport (serialization is shared: the in-process run
encodes and decodes every message too).
"""
import dataclasses
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest

from securegal.deploy.localnet import LocalFederation
from securegal.deploy.networked import FederationConfig, train_federation
from securegal.run import train

SHORT, LONG = 2, 12
REPEATS = 3


def _median_seconds(fn, repeats=REPEATS):
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.fixture(scope="module", params=["plain", "ckks"])
def federation(request, tmp_path_factory):
    """breast_cancer, M=4: three feature-party processes serving session after session."""
    with LocalFederation(tmp_path_factory.mktemp("net"), parties=4, rounds=LONG, seed=0, once=False,
                         residuals=request.param) as fed:
        yield fed




def test_round_overhead_loopback_vs_in_process(benchmark, federation, tmp_path):
    base = FederationConfig.load(federation.federation_toml)
    benchmark.extra_info["residuals"] = base.plan.residuals

    def networked(rounds):
        return lambda i: train_federation(dataclasses.replace(base, rounds=rounds, out=tmp_path / f"net{rounds}-{i}"))

    def embedded(rounds):
        return lambda i: train("breast_cancer", parties=4, rounds=rounds, seed=0, out=tmp_path / f"inp{rounds}-{i}",
                               plan=base.plan)

    per_round = {}
    for name, run in (("in_process", embedded), ("grpc_mtls", networked)):
        short, long = _median_seconds(run(SHORT)), _median_seconds(run(LONG))
        per_round[name] = (long - short) / (LONG - SHORT)
        benchmark.extra_info[f"{name}_T{SHORT}_s"] = round(short, 4)
        benchmark.extra_info[f"{name}_T{LONG}_s"] = round(long, 4)
        benchmark.extra_info[f"{name}_per_round_ms"] = round(1000 * per_round[name], 2)
    overhead = per_round["grpc_mtls"] - per_round["in_process"]
    benchmark.extra_info["network_overhead_per_round_ms"] = round(1000 * overhead, 2)
    print(f"\nper round: in-process {1000 * per_round['in_process']:.1f} ms, gRPC+mTLS loopback "
          f"{1000 * per_round['grpc_mtls']:.1f} ms, overhead {1000 * overhead:.1f} ms "
          f"(M=4, breast_cancer, {base.plan.residuals} residuals)")
    counter = iter(range(10**6))
    benchmark.pedantic(lambda: networked(LONG)(next(counter) + 100), rounds=3, iterations=1)


def _write_csv(path, header, columns):
    np.savetxt(path, np.column_stack(columns), delimiter=",", header=",".join(header), comments="", fmt="%.9g")


@pytest.mark.slow
def test_load_m8_n100k(benchmark, tmp_path):
    """M=8 organizations, n=100,000 rows (80 features, 10 each), T=10 over loopback with mTLS."""
    from sklearn.datasets import make_classification

    n, M, d = 100_000, 8, 10
    X, y = make_classification(n_samples=n, n_features=M * d, n_informative=40, n_redundant=0, random_state=0)
    ids = np.arange(n)
    _write_csv(tmp_path / "alice.csv", [f"a{j}" for j in range(d)] + ["y"], [X[:, :d], y])
    for i in range(1, M):
        _write_csv(tmp_path / f"party{i}.csv", ["id"] + [f"p{i}_{j}" for j in range(d)], [ids, X[:, i * d:(i + 1) * d]])
    fed = LocalFederation(tmp_path / "fed", parties=M, rounds=10, seed=0,
                          label_owner_data={"csv": str(tmp_path / "alice.csv"), "target": "y"},
                          party_data=lambda i: {"csv": str(tmp_path / f"party{i}.csv"), "id_column": "id"},
                          transport={"timeout": 600.0}, ready_timeout=900.0)
    peak = {}

    def run():
        wrapper = ("import resource, sys; from securegal.cli import main; rc = main(sys.argv[1:]); "
                   "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
                   "sys.exit(rc)")
        out = subprocess.run([sys.executable, "-c", wrapper, "train", "--federation", str(fed.federation_toml),
                              "--no-progress"], capture_output=True, text=True, timeout=1800)
        assert out.returncode == 0, out.stderr[-3000:]
        peak["kib"] = int(out.stderr.split("PEAK_RSS_KIB")[1].split()[0])

    with fed:
        start = time.perf_counter()
        benchmark.pedantic(run, rounds=1, iterations=1)
        wall = time.perf_counter() - start
        codes = fed.stop(grace=30.0)
    metrics = json.loads((fed.out / "metrics.json").read_text())
    gal = metrics["gal"]
    assert codes == {f"party{i}": 0 for i in range(1, M)}
    assert len(metrics["weights"]) == 10 and not {"stopped", "absent_per_round", "missing_at_predict"} & set(gal)
    from securegal.transcript import read_transcript
    for i in range(1, M):  # nothing lost: every party received and answered every round
        t = read_transcript(fed.out / "transcripts" / f"party{i}")
        assert len(list(t.select("fit_request", "received"))) == 10 == len(list(t.select("fit_reply", "sent")))
    benchmark.extra_info.update(label_owner_peak_rss_mib=round(peak["kib"] / 1024, 1), wall_s=round(wall, 1),
                                test_accuracy=gal["test"], n_train=metrics["n_train"])
    print(f"\nload M={M} n={n} T=10: wall {wall:.1f} s, label owner peak RSS {peak['kib'] / 1024:.0f} MiB, "
          f"test accuracy {gal['test']:.2f}%")


@pytest.fixture(scope="module")
def echo_link(tmp_path_factory):
    """One party server (echo) and a label-owner transport over mutual TLS on 127.0.0.1."""
    from securegal.transport.certs import Identity, init_federation
    from securegal.transport.grpc_client import GrpcTransport
    from securegal.transport.grpc_server import PartyServer

    certs = tmp_path_factory.mktemp("certs")
    init_federation(certs, ["alice", "party1", "party2", "party3"])
    servers = [PartyServer(lambda b: b, identity=Identity.from_dir(certs, f"party{i}")).start() for i in (1, 2, 3)]
    transport = GrpcTransport({f"party{i}": f"127.0.0.1:{s.port}" for i, s in zip((1, 2, 3), servers)},
                              identity=Identity.from_dir(certs, "alice"))
    yield transport
    transport.close()
    for s in servers:
        s.stop()


@pytest.mark.parametrize("size", [6_368, 1 << 20, 16 << 20], ids=["6KB-plain-residuals", "1MiB", "16MiB-chunked"])
def test_call_many_round_trip(benchmark, echo_link, size):
    """Pure transport cost: one request of ``size`` bytes to each of 3 parties and the same bytes
    back (the in-process transport does this in ~0 time: it hands over the same bytes object)."""
    payload = np.random.default_rng(0).bytes(size)
    requests = {p: payload for p in ("party1", "party2", "party3")}
    replies = benchmark(echo_link.call_many, requests)
    assert replies == requests
    benchmark.extra_info["bytes_each_way_per_party"] = size
