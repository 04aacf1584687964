"""A whole Flower deployment on 127.0.0.1, every organization its own processes.

Used by ``make flower-demo`` and tests/test_flower_deployment.py:

    python -m securegal.deploy.flower.localnet --parties 3 --rounds 2 --out runs/flower-demo

makes a fresh CA (the SuperLink's TLS certificate names ``localhost``; each organization's
certificate authenticates its ClientApp to its party runtime), one P-384 SuperNode
authentication key per feature party, starts ``flower-superlink`` with TLS and
``--enable-supernode-auth``, registers each party's public key (``flwr supernode register``),
starts per party the party runtime (:mod:`.party_runtime`) and one ``flower-supernode``, runs the
securegal app with ``flwr run`` and stops every process it started (each in its own process
group, so Flower's per-message children go too). Stopping also deletes the demo's private keys
(the CA's, each organization's TLS key and each SuperNode's authentication key): the working
directory keeps only certificates and public keys, so sharing a run does not ship them.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ...errors import ConfigError
from ...messages import RESIDUAL_MODES
from ...summary import summary
from ...transport.certs import init_federation, init_server
from ..config import dump
from ..federation import party_names
from ..localnet import _readline, federation_config, party_config
from ..ready import READY_TIMEOUT, ready_port
from .deployment import load_federation

SUPERLINK_HOST = "localhost"  # the SuperLink certificate's name
# How often a SuperExec asks its SuperNode (or SuperLink) for a task to start, i.e. for a message
# that needs a ClientApp process. flwr 1.42's default is 1 s; it reads this from the environment
# of flower-supernode / flower-superlink (flwr.supercore.superexec.run_superexec).
SUPEREXEC_POLL_SECONDS = 0.1

APP_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "securegal-flower"
version = "1.0.0"
description = "securegal GAL federation on Flower"
license = "MIT"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "securegal"

[tool.flwr.app.components]
serverapp = "securegal.deploy.flower.server_app:app"
clientapp = "securegal.deploy.flower.client_app:app"

[tool.flwr.app.config]
federation = "{federation}"
supernode-keys = "{keys}"
overwrite = false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_node_key(path: Path) -> Path:
    """A SuperNode authentication key pair (OpenSSH, P-384) at ``path`` and ``path.pub``."""
    key = ec.generate_private_key(ec.SECP384R1())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                  serialization.NoEncryption()))
    path.with_suffix(".pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                       serialization.PublicFormat.OpenSSH))
    return path


def write_superlink_cert(certs: Path) -> None:
    """``superlink.pem``/``.key`` signed by ``certs/ca.pem``, valid for localhost and 127.0.0.1
    (Flower's own SuperExec reaches the SuperLink by IP): ``securegal certs server``."""
    init_server(certs, "superlink", [SUPERLINK_HOST, "127.0.0.1"], days=7)


class FlowerLocalFederation:
    """SuperLink, party runtimes and SuperNodes on 127.0.0.1; a context manager that stops them all."""

    def __init__(self, workdir: str | Path, *, parties: int = 3, rounds: int = 2, seed: int = 0,
                 dataset: str = "breast_cancer", label_owner_data: dict | None = None, party_data=None,
                 residuals: str = "plain", privacy: dict | None = None, federation_extra: dict | None = None,
                 transport: dict | None = None, min_parties: int | None = None, out: str | Path | None = None,
                 ready_timeout: float = READY_TIMEOUT, superexec_poll: float = SUPEREXEC_POLL_SECONDS):
        if parties < 2:
            raise ConfigError(f"a federation needs at least 2 parties, got {parties}")
        self.workdir = Path(workdir).resolve()
        self.out = Path(out).resolve() if out is not None else self.workdir / "run"
        self.names = party_names(parties)[1:]
        self.parties, self.rounds, self.seed = parties, rounds, seed
        # ``party_data(i)``: party i's [data] table (i = 1..M-1), as for the gRPC LocalFederation
        self.label_owner_data = label_owner_data or {"dataset": dataset}
        self.party_data = party_data or (lambda i: {"dataset": dataset, "parties": parties, "block": i})
        self.transport, self.min_parties = transport, min_parties
        self.residuals, self.privacy, self.federation_extra = residuals, privacy, federation_extra
        self.ready_timeout = ready_timeout
        self.certs, self.keys = self.workdir / "certs", self.workdir / "supernode-keys"
        self.config_dir, self.app_dir = self.workdir / "config", self.workdir / "app"
        self.port = free_port()
        self.env = {**os.environ, "FLWR_HOME": str(self.workdir / "flwr-home"), "PYTHONUNBUFFERED": "1",
                    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(superexec_poll),
                    # Flower starts flower-superexec / flwr-clientapp by name: this interpreter's scripts first
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.processes: dict[str, subprocess.Popen] = {}
        self.runtime_ports: dict[str, int] = {}

    # -- setup -------------------------------------------------------------------------------
    def _files(self) -> None:
        for d in (self.config_dir, self.app_dir, self.keys, self.workdir / "flwr-home"):
            d.mkdir(parents=True, exist_ok=True)
        init_federation(self.certs, self.names)
        write_superlink_cert(self.certs)
        for i, name in enumerate(self.names, 1):
            write_node_key(self.keys / name)
            (self.config_dir / f"{name}.toml").write_text(party_config(
                name, data=self.party_data(i),
                learner_seed=self.seed * 1000 + i, certs=self.certs, residuals=self.residuals, privacy=self.privacy,
                transcripts=self.out / "transcripts" / name))
        fed = self.federation_file("federation", rounds=self.rounds, min_parties=self.min_parties, out=self.out)
        (self.app_dir / "pyproject.toml").write_text(APP_PYPROJECT.format(federation=fed, keys=self.keys))
        (self.app_dir / "README.md").write_text("securegal on Flower: the apps live in securegal.deploy.flower\n")
        (self.workdir / "flwr-home" / "config.toml").write_text(dump({"superlink": {
            "default": "local", "local": {"address": f"{SUPERLINK_HOST}:{self.port}",
                                          "root-certificates": str(self.certs / "ca.pem")}}}))

    def federation_file(self, name: str, *, rounds: int, min_parties: int | None = None,
                        out: Path | None = None) -> Path:
        """``config/<name>.toml``: a federation.toml for these parties (results in ``out``, default
        ``<workdir>/<name>``), for :meth:`run`."""
        path = self.config_dir / f"{name}.toml"
        # [[party]] address and [tls] are the gRPC deployment's keys, unused on Flower
        path.write_text(federation_config(data=self.label_owner_data, peers={n: "127.0.0.1:1" for n in self.names},
                                          rounds=rounds, seed=self.seed, out=out or self.workdir / name, certs=None,
                                          min_parties=min_parties, transport=self.transport,
                                          residuals=self.residuals, extra=self.federation_extra))
        return path

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(command, stdout=subprocess.PIPE if name.startswith("runtime-") else log,
                                stderr=log, env=self.env, start_new_session=True, cwd=self.workdir)
        log.close()
        self.processes[name] = proc
        return proc

    def flwr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """The Flower CLI against this SuperLink."""
        return subprocess.run([str(Path(sys.executable).parent / "flwr"), *args], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=timeout)

    def start(self) -> "FlowerLocalFederation":
        self._files()
        bin_ = Path(sys.executable).parent
        self._spawn("superlink", [str(bin_ / "flower-superlink"), "--host", "127.0.0.1", "--port", str(self.port),
                                  "--ssl-ca-certfile", str(self.certs / "ca.pem"),
                                  "--ssl-certfile", str(self.certs / "superlink.pem"),
                                  "--ssl-keyfile", str(self.certs / "superlink.key"),
                                  "--enable-supernode-auth"])
        self._await_superlink()
        for name in self.names:
            self.register(self.keys / f"{name}.pub")
        for name in self.names:  # the party runtimes load their data in parallel
            self._spawn(f"runtime-{name}", [sys.executable, "-m", "securegal.deploy.flower.party_runtime",
                                            "--config", str(self.config_dir / f"{name}.toml")])
        for name in self.names:
            line = _readline(self.processes[f"runtime-{name}"], self.ready_timeout)
            port = ready_port(line, f"party runtime {name}")
            if port is None:
                self.stop()
                raise RuntimeError(f"party runtime {name} did not start (see {self.workdir / f'runtime-{name}.log'})")
            self.runtime_ports[name] = port
            self.start_supernode(name)
        return self

    def _await_superlink(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.processes["superlink"].poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"flower-superlink did not start (see {self.workdir / 'superlink.log'})")

    def register(self, public_key: Path) -> None:
        """Register a SuperNode public key with the SuperLink (``flwr supernode register``)."""
        done = self.flwr("supernode", "register", str(public_key), "local")
        if done.returncode != 0:
            raise RuntimeError(f"flwr supernode register {public_key} failed: {done.stdout}{done.stderr}")

    def start_supernode(self, name: str, key: Path | None = None) -> subprocess.Popen:
        """One ``flower-supernode`` serving party ``name`` (``key``: its authentication key,
        default the one registered for ``name``)."""
        key = key or self.keys / name
        node_config = (f'party-config="{self.config_dir / (name + ".toml")}" '
                       f'party-runtime="127.0.0.1:{self.runtime_ports[name]}" auth-key="{key}"')
        return self._spawn(f"supernode-{name}" if key == self.keys / name else f"supernode-{key.name}", [
            str(Path(sys.executable).parent / "flower-supernode"), "--superlink", f"{SUPERLINK_HOST}:{self.port}",
            "--root-certificates", str(self.certs / "ca.pem"), "--auth-supernode-private-key", str(key),
            "--auth-supernode-public-key", str(key.with_suffix(".pub")), "--port", str(free_port()),
            "--node-config", node_config])

    # -- run -----------------------------------------------------------------------------------
    def run(self, timeout: float = 600.0, federation: Path | None = None) -> dict:
        """``flwr run`` the securegal app (``federation``: another file of :meth:`federation_file`,
        given as run config); returns the label owner's metrics.json."""
        args = ["--run-config", f'federation="{federation}"'] if federation is not None else []
        log = self.workdir / f"flwr-run{'-' + federation.stem if federation is not None else ''}.log"
        try:
            done = self.flwr("run", str(self.app_dir), "local", "--stream", *args, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            log.write_text(f"{exc.stdout or ''}{exc.stderr or ''}")
            raise RuntimeError(f"flwr run did not finish in {timeout:g} s; see {log}") from None
        log.write_text(done.stdout + done.stderr)
        out = load_federation(federation).out if federation is not None else self.out
        if done.returncode != 0 or not (out / "metrics.json").exists():
            raise RuntimeError(f"flwr run failed ({done.returncode}); see {log}")
        return json.loads((out / "metrics.json").read_text())

    def leave(self, name: str) -> None:
        """Party ``name``'s organization goes away: its party runtime is killed (SIGKILL) and its
        SuperNode stopped (SIGTERM: it deactivates itself at the SuperLink, which then answers
        messages to it with NODE_UNAVAILABLE)."""
        for proc, sig in ((self.processes[f"runtime-{name}"], signal.SIGKILL),
                          (self.processes[f"supernode-{name}"], signal.SIGTERM)):
            if proc.poll() is None:
                os.killpg(proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> dict[str, int]:
        """Stop every process group this object started; returns their exit codes."""
        codes = {}
        for name, proc in reversed(list(self.processes.items())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                codes[name] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                codes[name] = proc.wait()
            try:  # children that outlived their leader (Flower's per-message processes)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout  # SIGKILL is asynchronous: wait until the group is gone
            while time.monotonic() < deadline:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            if proc.stdout is not None:
                proc.stdout.close()
        self._remove_private_keys()
        return codes

    def _remove_private_keys(self) -> None:
        for key in [*self.certs.glob("*.key"), *(p for p in self.keys.glob("*") if p.suffix != ".pub")]:
            key.unlink(missing_ok=True)

    def __enter__(self) -> "FlowerLocalFederation":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="breast_cancer")
    p.add_argument("--parties", "-M", type=int, default=3)
    p.add_argument("--rounds", "-T", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--residuals", default="plain", choices=RESIDUAL_MODES)
    p.add_argument("--out", type=Path, default=Path("runs/flower-demo"))
    args = p.parse_args(argv)
    workdir = args.out / "federation"
    if workdir.exists() and any(workdir.iterdir()):
        raise SystemExit(f"{workdir} is not empty; remove it for fresh certificates and keys")
    # SIGTERM (timeout, kill, a CI runner) unwinds like Ctrl-C: every process is stopped, the keys deleted
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    print(f"flower: starting a SuperLink and, per feature party, a party runtime and a SuperNode in {workdir} ...",
          file=sys.stderr, flush=True)
    with FlowerLocalFederation(workdir, parties=args.parties, rounds=args.rounds, seed=args.seed,
                               dataset=args.dataset, residuals=args.residuals, out=args.out) as fed:
        print(f"flower: flwr run: {args.rounds} rounds of GAL ...", file=sys.stderr, flush=True)
        metrics = fed.run()
    print(summary(metrics, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
