"""A whole federation on one machine, every organization its own process on 127.0.0.1.

Used by ``make network-demo``, the multi-process tests and the network benchmarks:

    python -m securegal.deploy.localnet --dataset breast_cancer --parties 4 --rounds 10 --out runs/network-demo

makes fresh certificates, writes one ``party.toml`` per feature party and a ``federation.toml``
for the label owner (in ``<out>/config``), starts the feature parties (``securegal party
serve``), runs the label owner (``securegal train --federation``) as a separate process, stops
every process it started and exits with the label owner's exit code.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from ..errors import ConfigError, PartyUnavailable, SecuregalError
from ..files import private_dir
from ..messages import LABEL_OWNER, RESIDUAL_MODES
from ..privacy.plan import DEFAULT_DELTA
from ..transport.certs import init_federation
from .config import dump
from .federation import party_names
from .ready import READY_TIMEOUT, ready_port



def _tls(certs: Path | None, name: str) -> dict:
    if certs is None:
        return {"insecure": True}
    return {"cert": str(certs / f"{name}.pem"), "key": str(certs / f"{name}.key"), "ca": str(certs / "ca.pem")}


def party_config(name: str, *, data: dict, learner_seed: int, certs: Path | None, transcripts: Path | None,
                 listen: str = "127.0.0.1:0", limits: dict | None = None, residuals: str = "plain",
                 privacy: dict | None = None) -> str:
    """A ``party.toml``; ``privacy`` adds ``[privacy]`` keys (e.g. the party's DP ``epsilon``). A DP
    party on a built-in dataset keeps its ledger beside the file (``<name>.securegal-ledger.json``)
    unless ``privacy`` names one or its transcripts directory holds it."""
    privacy = dict(privacy or {})
    if "epsilon" in privacy and "ledger" not in privacy and "dataset" in data and transcripts is None:
        privacy["ledger"] = f"{name}.securegal-ledger.json"
    return dump({"name": name, "label_owner": LABEL_OWNER, "listen": listen, "transcripts": transcripts,
                 "data": data, "learner": {"name": "linear", "seed": learner_seed},
                 "privacy": {"residuals": residuals, **privacy}, "limits": limits,
                 "tls": _tls(certs, name)})


def federation_config(*, data: dict, peers: dict[str, str], rounds: int, seed: int, out: Path, certs: Path | None,
                      min_parties: int | None = None, transport: dict | None = None, residuals: str = "plain",
                      extra: dict | None = None) -> str:
    """A ``federation.toml``; ``extra`` adds keys (e.g. ``eta``, ``residual_clip``, a ``label_dp`` table)."""
    return dump({"name": LABEL_OWNER, "seed": seed, "rounds": rounds, "min_parties": min_parties,
                 "residuals": residuals, **(extra or {}), "out": out, "data": data, "transport": transport,
                 "tls": _tls(certs, LABEL_OWNER),
                 "party": [{"name": n, "address": a} for n, a in peers.items()]})


def securegal_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "securegal.cli", *args]


class LocalFederation:
    """Feature-party processes on 127.0.0.1 and the ``federation.toml`` that reaches them.

    ``party_data(i)`` gives party i's ``[data]`` table (i = 1..M-1); by default block i of
    ``dataset``'s built-in split. With ``once`` each party exits after one session, else it
    serves sessions until stopped. Use as a context manager: every process is stopped on exit.
    """

    def __init__(self, workdir: str | Path, *, parties: int, rounds: int = 10, seed: int = 0,
                 dataset: str | None = "breast_cancer", label_owner_data: dict | None = None,
                 party_data=None, out: str | Path | None = None, insecure: bool = False, min_parties: int = 1,
                 transport: dict | None = None, limits: dict | None = None, transcripts: bool = True,
                 once: bool = True, ready_timeout: float = READY_TIMEOUT, residuals: str = "plain",
                 privacy: dict | None = None, federation_extra: dict | None = None):
        if parties < 2:
            raise ConfigError(f"a networked federation needs at least 2 parties, got {parties}")
        self.workdir = Path(workdir).resolve()
        self.config_dir = self.workdir / "config"
        self.out = Path(out).resolve() if out is not None else self.workdir / "run"
        self.names = party_names(parties)[1:]
        self.rounds, self.seed, self.min_parties = rounds, seed, min_parties
        self.label_owner_data = label_owner_data or {"dataset": dataset}
        self.party_data = party_data or (lambda i: {"dataset": dataset, "parties": parties, "block": i})
        # Demo keys live in their own, clearly named folder beside the workdir, never under the
        # results, and are removed when the federation stops.
        self.certs = None if insecure else self.workdir.parent / f"{self.workdir.name}.DEMO-CERTS-delete-me"
        self.transport, self.limits, self.transcripts, self.once = transport, limits, transcripts, once
        self.ready_timeout, self.residuals = ready_timeout, residuals
        self.privacy, self.federation_extra = privacy, federation_extra  # every party's [privacy] DP keys
        self.processes: dict[str, subprocess.Popen] = {}
        self.addresses: dict[str, str] = {}
        self.federation_toml = self.config_dir / "federation.toml"

    def start(self) -> "LocalFederation":
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "LocalFederation":
        private_dir(self.config_dir)
        if self.certs is not None:
            shutil.rmtree(self.certs, ignore_errors=True)
            init_federation(self.certs, [LABEL_OWNER, *self.names])
        for i, name in enumerate(self.names, 1):
            path = self.config_dir / f"{name}.toml"
            path.write_text(party_config(name, data=self.party_data(i), learner_seed=self.seed * 1000 + i,
                                         certs=self.certs, limits=self.limits, residuals=self.residuals,
                                         privacy=self.privacy,
                                         transcripts=self.out / "transcripts" / name if self.transcripts else None))
        for name in self.names:  # all start in parallel; then wait for each to serve
            self._spawn(name)
        for name in self.names:
            self._await_ready(name)
        self.write_federation()
        return self

    def _spawn(self, name: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        once = ["--once"] if self.once else []
        proc = subprocess.Popen(securegal_command("party", "serve", "--config", str(self.config_dir / f"{name}.toml"),
                                                  *once),
                                stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        self.processes[name] = proc

    def _await_ready(self, name: str) -> str:
        proc = self.processes[name]
        line = _readline(proc, self.ready_timeout)
        port = ready_port(line, f"party {name}")
        if port is None:
            raise PartyUnavailable(f"party {name} did not start (see {self.workdir / (name + '.log')}): {line!r}")
        self.addresses[name] = f"127.0.0.1:{port}"
        return self.addresses[name]

    def write_federation(self) -> Path:
        self.federation_toml.write_text(federation_config(
            data=self.label_owner_data, peers=self.addresses, rounds=self.rounds, seed=self.seed, out=self.out,
            certs=self.certs, min_parties=self.min_parties, transport=self.transport, residuals=self.residuals,
            extra=self.federation_extra))
        return self.federation_toml

    def label_owner(self, *extra: str) -> subprocess.Popen:
        """Start the label owner (``securegal train --federation``) as its own process."""
        log = open(self.workdir / "alice.log", "ab")
        proc = subprocess.Popen(securegal_command("train", "--federation", str(self.federation_toml), "--no-progress",
                                                  *extra), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return proc

    def kill(self, name: str) -> None:
        proc = self.processes[name]
        proc.kill()
        proc.wait()

    def stop(self, timeout: float = 10.0, grace: float = 0.0) -> dict[str, int]:
        """Stop every party process this object started (after ``grace`` seconds to exit on their
        own, e.g. after the session finished); returns their exit codes."""
        codes = {}
        for name, proc in self.processes.items():
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.terminate()
            try:
                codes[name] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self.certs is not None:
            shutil.rmtree(self.certs, ignore_errors=True)
        return codes

    def __enter__(self) -> "LocalFederation":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    """The first stdout line of ``proc``, or '' if it exits or stays silent for ``timeout`` seconds."""
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return got[0].decode(errors="replace").strip() if got else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] + " Writes the configs, starts every "
                                "process, runs the label owner and stops them all.")
    p.add_argument("--dataset", default="breast_cancer",
                   help="built-in dataset, its columns split between the parties (default: breast_cancer)")
    p.add_argument("--parties", "-M", type=int, default=4,
                   help="organizations, the label owner included (default: 4)")
    p.add_argument("--rounds", "-T", type=int, default=10, help="boosting rounds (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="the row split's and the learners' seed (default: 0)")
    p.add_argument("--out", type=Path, default=Path("runs/network-demo"), help="the label owner's run directory, "
                   "replaced if it holds a result (default: runs/network-demo)")
    p.add_argument("--workdir", type=Path, help="configs and logs, refused if not empty (default: <out>.federation, "
                   "beside the results; demo certificates go to <workdir>.DEMO-CERTS-delete-me and are removed at "
                   "the end)")
    p.add_argument("--residuals", default="plain", choices=RESIDUAL_MODES,
                   help="plain, or CKKS-encrypted under the label owner's key (default: plain)")
    p.add_argument("--epsilon", type=float, help="give every feature party this DP budget in its party.toml")
    p.add_argument("--delta", type=float, default=DEFAULT_DELTA,
                   help=f"delta of the parties' DP budgets (default: {DEFAULT_DELTA:g})")
    args = p.parse_args(argv)
    privacy = {"epsilon": args.epsilon, "delta": args.delta} if args.epsilon is not None else None
    # DP parties on CKKS rely on the label owner's declared residual clip (docs/privacy.md 5b)
    extra = {"residual_clip": 1.0} if privacy and args.residuals == "ckks" else None
    workdir = args.workdir or args.out.with_name(args.out.name + ".federation")
    try:
        if workdir.exists() and any(workdir.iterdir()):
            raise ConfigError(f"{workdir} is not empty; remove it for a fresh federation")
        with LocalFederation(workdir, parties=args.parties, rounds=args.rounds, seed=args.seed,
                             dataset=args.dataset, out=args.out, residuals=args.residuals, privacy=privacy,
                             federation_extra=extra) as fed:
            owner = fed.label_owner("--overwrite")
            code = owner.wait()
            print((workdir / "alice.log").read_text(), end="")
            party_codes = fed.stop(grace=60.0)
    except SecuregalError as exc:
        print(f"securegal localnet: error: {exc}", file=sys.stderr)
        return 2
    print(f"feature parties exited with {party_codes}; label owner with {code}")
    return code or max(party_codes.values(), default=0)


if __name__ == "__main__":
    sys.exit(main())
