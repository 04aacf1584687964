"""Do feature parties in worker processes speed up the embedded CKKS job? (issue 13, item 3)

Runs the job of ``test_ckks_scale.py`` (T=10, M=4, 32 features, linear, CKKS) alternately
in process (the embedded default) and with each feature party's endpoint in a forked worker
process that receives the request bytes and sends the reply bytes over a pipe (the same wire
bytes as in process; nothing pickled), the label owner sending every party its request before
reading any reply. Prints wall and CPU time (label owner + workers) per run and the medians::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/ckks_party_processes.py --rows 5000 50000

A measurement only: the library has no such option (benchmarks/README.md says why).
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time

from gal_job import load_average, synthetic
from securegal.data.split import split_rows
from securegal.deploy.embedded import EmbeddedDeployment
from securegal.deploy.federation import GalJob, TargetScaler
from securegal.privacy.plan import PrivacyPlan
from securegal.transport.inprocess import InProcessTransport

_STOP = b""  # an empty request ends a worker (no wire message is empty)


def _serve(handler, conn) -> None:
    while (data := conn.recv_bytes()) != _STOP:
        conn.send_bytes(handler(data))


class WorkerTransport:
    """Each party's handler of an :class:`InProcessTransport` in a forked process."""

    def __init__(self, inner: InProcessTransport):
        ctx = multiprocessing.get_context("fork")
        self.conns, self.workers = {}, []
        for name, handler in inner.handlers.items():
            here, there = ctx.Pipe()
            worker = ctx.Process(target=_serve, args=(handler, there), daemon=True)
            worker.start()
            there.close()
            self.conns[name] = here
            self.workers.append(worker)

    def call_many(self, requests, reply_limits=None):
        for party, data in requests.items():
            self.conns[party].send_bytes(data)
        return {party: self.conns[party].recv_bytes() for party in requests}

    def close(self) -> None:
        for conn in self.conns.values():
            conn.send_bytes(_STOP)
            conn.close()
        for worker in self.workers:
            worker.join()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(data, workers: bool, parties: int = 4, rounds: int = 10) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process and its workers, test accuracy)."""
    split = split_rows(data, seed=0, test_fraction=0.2)
    scaler = TargetScaler.fit(data, data.y[split.train])
    deployment = EmbeddedDeployment(psi=False)
    job = GalJob.from_plan(PrivacyPlan(residuals="ckks"), dataset=data, n_train=len(split.train), parties=parties,
                           rounds=rounds, learner="linear", seed=0, scaler=scaler)
    wall, cpu = time.perf_counter(), time.process_time() + children_cpu()
    owner = deployment.build(job, data, split, deployment.blocks(data, parties))
    if workers:
        owner.messenger.transport = WorkerTransport(owner.messenger.transport)
    accuracy = deployment.run(owner, data, split, scaler).test
    return time.perf_counter() - wall, time.process_time() + children_cpu() - cpu, accuracy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[50_000])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    for n in args.rows:
        data = synthetic(n, 32)
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for workers in (False, True):
                wall, cpu, accuracy = run(data, workers)
                times[workers].append(wall)
                print(f"n={n:,} {'workers ' if workers else 'embedded'}: wall {wall:.2f} s, CPU {cpu:.2f} s, "
                      f"accuracy {accuracy:.2f}%, load {load_average():.1f}", flush=True)
        embedded, workers = statistics.median(times[False]), statistics.median(times[True])
        print(f"n={n:,}: median wall embedded {embedded:.2f} s, worker processes {workers:.2f} s "
              f"(speed-up {embedded / workers:.2f}x)")


if __name__ == "__main__":
    main()
