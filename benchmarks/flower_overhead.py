"""What Flower costs per exchange against securegal's own gRPC transport (issue 14).

    flock /tmp/heavy.lock .venv/bin/python benchmarks/flower_overhead.py [--repeats 3]

One label owner -> one party echo round trip (the party returns the bytes it got) at 6 KB,
1 MiB and 16 MiB, the median of ``--repeats`` after one warm-up:

- ``grpc``: :class:`~securegal.transport.grpc_client.GrpcTransport` to a
  :class:`~securegal.transport.grpc_server.PartyServer` with mutual TLS on 127.0.0.1;
- ``flower``: :class:`~securegal.deploy.flower.transport.FlowerTransport` from a ServerApp
  through ``flower-superlink`` (TLS, SuperNode authentication) to one ``flower-supernode``
  whose ClientApp echoes (the same records as the securegal app), all on 127.0.0.1;
- ``flower-defaults``: the same with flwr 1.42's own polling (the ServerApp's Grid pulls every
  3 s, as ``Grid.send_and_receive`` does; the SuperExec looks for tasks every 1 s), where
  ``flower`` pulls every 50 ms and runs the SuperExec at 0.1 s;
- ``flower-sim``: the same through the simulation engine (in-memory Grid, one Ray actor).

Prints one JSON object {transport: {size: seconds}}.

With ``--ckks-n N`` it runs instead a whole CKKS federation (M=4: the label owner and three
feature parties, 4 columns each, a synthetic linear regression of N rows, ``--ckks-rounds``
rounds) once over gRPC (mutual TLS, :class:`~securegal.deploy.localnet.LocalFederation`) and once
through the Flower deployment (:class:`~securegal.deploy.flower.localnet.FlowerLocalFederation`),
and prints per deployment the seconds of setup and of each round (from the label owner's
checkpoint, written after setup and after every round), the wall time, and the bytes the label
owner sent and received per round (its transcript):

    flock /tmp/heavy.lock .venv/bin/python benchmarks/flower_overhead.py --ckks-n 50000 --ckks-rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from securegal.deploy.flower.transport import POLL_SECONDS

SIZES = {"6 KB": 6 * 1024, "1 MiB": 1 << 20, "16 MiB": 16 << 20}

ECHO_APP = '''
import json, os, time
from pathlib import Path
from flwr.app import Message
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from securegal.deploy.flower.records import ACTION, pack, unpack
from securegal.deploy.flower.transport import FlowerTransport

client = ClientApp()


@client.query(ACTION)
def echo(message, context):
    return Message(pack(unpack(message.content)), reply_to=message)


server = ServerApp()


@server.main()
def main(grid, context):
    cfg = context.run_config
    while not list(grid.get_node_ids()):
        time.sleep(0.5)
    transport = FlowerTransport(grid, {"echo": list(grid.get_node_ids())[0]}, timeout=600, poll=float(cfg["poll"]))
    results = {}
    for size in [int(s) for s in str(cfg["sizes"]).split(",")]:
        payload = os.urandom(size)
        transport.call_many({"echo": payload})  # warm-up
        times = []
        for _ in range(int(cfg["repeats"])):
            start = time.perf_counter()
            reply = transport.call_many({"echo": payload})["echo"]
            times.append(time.perf_counter() - start)
            if reply != payload:
                raise RuntimeError(f"echo of {size} bytes came back different: {reply!r:.200}")
        results[size] = times
    Path(str(cfg["out"])).write_text(json.dumps(results))
'''


def bench_grpc(workdir: Path, repeats: int) -> dict[str, float]:
    from securegal.transport.certs import Identity, init_federation
    from securegal.transport.grpc_client import GrpcTransport
    from securegal.transport.grpc_server import PartyServer

    certs = workdir / "grpc-certs"
    init_federation(certs, ["alice", "party1"])
    ident = {n: Identity.load(certs / f"{n}.pem", certs / f"{n}.key", certs / "ca.pem") for n in ("alice", "party1")}
    server = PartyServer(lambda data: data, "127.0.0.1:0", identity=ident["party1"]).start()
    transport = GrpcTransport({"party1": f"127.0.0.1:{server.port}"}, identity=ident["alice"])
    out = {}
    try:
        for label, size in SIZES.items():
            payload = os.urandom(size)
            transport.call_many({"party1": payload})
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                reply = transport.call_many({"party1": payload})["party1"]
                times.append(time.perf_counter() - start)
                if reply != payload:
                    raise RuntimeError("gRPC echo came back different")
            out[label] = statistics.median(times)
    finally:
        transport.close()
        server.stop()
    return out


def _echo_app(directory: Path, repeats: int, out: Path, poll: float = POLL_SECONDS) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "echo_app.py").write_text(ECHO_APP)
    from securegal.deploy.flower.localnet import APP_PYPROJECT

    text = APP_PYPROJECT.split("[tool.flwr.app.components]")[0]
    text += ('[tool.flwr.app.components]\nserverapp = "echo_app:server"\nclientapp = "echo_app:client"\n\n'
             f'[tool.flwr.app.config]\nsizes = "{",".join(str(s) for s in SIZES.values())}"\n'
             f'repeats = {repeats}\npoll = {poll}\nout = "{out}"\n')
    (directory / "pyproject.toml").write_text(text)


def bench_flower(workdir: Path, repeats: int, defaults: bool = False) -> dict[str, float]:
    """``defaults``: as flwr 1.42 polls out of the box (the Grid every 3 s, the SuperExec every 1 s)."""
    from securegal.deploy.flower.localnet import SUPEREXEC_POLL_SECONDS, FlowerLocalFederation

    name = "flower-defaults" if defaults else "flower"
    out = workdir / f"{name}-echo.json"
    fed = FlowerLocalFederation(workdir / name, parties=2, superexec_poll=1.0 if defaults else SUPEREXEC_POLL_SECONDS)
    with fed:
        _echo_app(fed.app_dir, repeats, out, poll=3.0 if defaults else POLL_SECONDS)
        done = fed.flwr("run", str(fed.app_dir), "local", "--stream", timeout=1800)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"flwr run failed: {done.stdout[-3000:]}{done.stderr[-3000:]}")
    raw = json.loads(out.read_text())
    return {label: statistics.median(raw[str(size)]) for label, size in SIZES.items()}


def bench_simulation(workdir: Path, repeats: int) -> dict[str, float]:
    from flwr.simulation import run_simulation

    from securegal.deploy.flower.client_app import SIMULATION_BACKEND

    app_dir, out = workdir / "sim-app", workdir / "sim-echo.json"
    _echo_app(app_dir, repeats, out)
    sys.path.insert(0, str(app_dir))
    import echo_app

    # run_simulation has no run config: give the ServerApp its settings through the module
    def main(grid, context):
        context.run_config.update({"sizes": ",".join(str(s) for s in SIZES.values()), "repeats": repeats,
                                   "poll": POLL_SECONDS, "out": str(out)})
        return echo_app.main(grid, context)

    from flwr.serverapp import ServerApp
    server = ServerApp()
    server.main()(main)
    run_simulation(server_app=server, client_app=echo_app.client, num_supernodes=1, backend_config=SIMULATION_BACKEND)
    raw = json.loads(out.read_text())
    return {label: statistics.median(raw[str(size)]) for label, size in SIZES.items()}


def write_tables(directory: Path, n: int, parties: int = 4, columns: int = 4, seed: int = 0) -> tuple:
    """A linear regression of ``n`` rows split by columns: ``alice.csv`` (its columns and ``y``) and
    ``party<i>.csv`` (``id`` and its columns); returns the label owner's and the parties' [data]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, parties * columns))
    y = X @ rng.normal(size=X.shape[1]) + rng.normal(scale=0.5, size=n)
    directory.mkdir(parents=True, exist_ok=True)

    def write(name, header, block):
        np.savetxt(directory / name, block, delimiter=",", header=",".join(header), comments="", fmt="%.9g")

    write("alice.csv", [f"a{j}" for j in range(columns)] + ["y"], np.column_stack([X[:, :columns], y]))
    for i in range(1, parties):
        write(f"party{i}.csv", ["id"] + [f"p{i}_{j}" for j in range(columns)],
              np.column_stack([np.arange(n), X[:, i * columns:(i + 1) * columns]]))
    return ({"csv": str(directory / "alice.csv"), "target": "y"},
            lambda i: {"csv": str(directory / f"party{i}.csv"), "id_column": "id"})


def run_profile(out: Path, wall: float) -> dict:
    """Seconds of setup and of every round (checkpoint times), and the label owner's bytes per kind."""
    from securegal.transcript import INDEX

    stamps = [p.stat().st_mtime for p in sorted((out / "checkpoint").glob("F_*.npy"))]
    metrics = json.loads((out / "metrics.json").read_text())
    sizes: dict[str, int] = {}
    for line in (out / "transcripts" / "alice" / INDEX).read_text().splitlines():
        entry = json.loads(line)
        sizes[entry["kind"]] = sizes.get(entry["kind"], 0) + entry["length"]
    rounds = len(stamps) - 1
    return {"wall_s": round(wall, 1), "train_s": round(metrics["seconds"], 1),
            "round_s": [round(b - a, 2) for a, b in zip(stamps, stamps[1:])],
            "fit_mb_per_round": round((sizes.get("fit_request", 0) + sizes.get("fit_reply", 0)) / rounds / 1e6, 1),
            "setup_mb": round((sizes.get("setup", 0) + sizes.get("setup_ack", 0)) / 1e6, 1),
            "metric": metrics["gal"]["test"]}


def bench_ckks_run(workdir: Path, n: int, rounds: int, which: list[str]) -> dict[str, dict]:
    """The CKKS federation of ``n`` rows over gRPC and through the Flower deployment."""
    from securegal.deploy.flower.localnet import FlowerLocalFederation
    from securegal.deploy.localnet import LocalFederation
    from securegal.deploy.networked import FederationConfig, train_federation

    owner, party = write_tables(workdir / "tables", n)
    timeout = {"timeout": 3600.0}
    results = {}
    if "grpc" in which:
        with LocalFederation(workdir / "grpc", parties=4, rounds=rounds, seed=0, label_owner_data=owner,
                             party_data=party, residuals="ckks", transport=timeout, ready_timeout=900.0) as fed:
            start = time.perf_counter()
            train_federation(FederationConfig.load(fed.federation_toml))
            results["grpc"] = run_profile(fed.out, time.perf_counter() - start)
        print("grpc", json.dumps(results["grpc"]), file=sys.stderr, flush=True)
    if "flower" in which:
        with FlowerLocalFederation(workdir / "flower", parties=4, rounds=rounds, seed=0, label_owner_data=owner,
                                   party_data=party, residuals="ckks", transport=timeout,
                                   ready_timeout=900.0) as fed:
            start = time.perf_counter()
            fed.run(timeout=4 * 3600)
            results["flower"] = run_profile(fed.out, time.perf_counter() - start)
        print("flower", json.dumps(results["flower"]), file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", choices=("grpc", "flower", "flower-defaults", "flower-sim"), action="append")
    p.add_argument("--ckks-n", type=int, help="run a CKKS federation of this many rows instead of the echo")
    p.add_argument("--ckks-rounds", type=int, default=2)
    args = p.parse_args(argv)
    chosen = args.only or ["grpc", "flower", "flower-defaults", "flower-sim"]
    if args.ckks_n is not None:
        if not 100 <= args.ckks_n <= 10**6 or not 1 <= args.ckks_rounds <= 50:
            p.error(f"--ckks-n must be in 100..1e6 and --ckks-rounds in 1..50, got {args.ckks_n}, {args.ckks_rounds}")
        with tempfile.TemporaryDirectory(prefix="securegal-flower-ckks-") as tmp:
            print(json.dumps(bench_ckks_run(Path(tmp), args.ckks_n, args.ckks_rounds, chosen), indent=1))
        return 0
    results = {}
    with tempfile.TemporaryDirectory(prefix="securegal-flower-bench-") as tmp:
        for name, fn in (("grpc", bench_grpc), ("flower", bench_flower),
                         ("flower-defaults", lambda *a: bench_flower(*a, defaults=True)),
                         ("flower-sim", bench_simulation)):
            if name in chosen:
                results[name] = fn(Path(tmp), args.repeats)
                print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
