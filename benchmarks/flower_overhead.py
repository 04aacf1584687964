"""What Flower costs per exchange against securegal's own gRPC transport (issue 14).

    flock /tmp/heavy.lock .venv/bin/python benchmarks/flower_overhead.py [--repeats 3]

One label owner -> one party echo round trip (the party returns the bytes it got) at 6 KB,
1 MiB and 16 MiB, the median of ``--repeats`` after one warm-up:

- ``grpc``: :class:`~securegal.transport.grpc_client.GrpcTransport` to a
  :class:`~securegal.transport.grpc_server.PartyServer` with mutual TLS on 127.0.0.1;
- ``flower``: :class:`~securegal.deploy.flower.transport.FlowerTransport` from a ServerApp
  through ``flower-superlink`` (TLS, SuperNode authentication) to one ``flower-supernode``
  whose ClientApp echoes (the same records as the securegal app), all on 127.0.0.1;
- ``flower-sim``: the same through the simulation engine (in-memory Grid, one Ray actor).

Prints one JSON object {transport: {size: seconds}}.
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
    transport = FlowerTransport(grid, {"echo": list(grid.get_node_ids())[0]}, timeout=600)
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


def _echo_app(directory: Path, repeats: int, out: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "echo_app.py").write_text(ECHO_APP)
    from securegal.deploy.flower.localnet import APP_PYPROJECT

    text = APP_PYPROJECT.split("[tool.flwr.app.components]")[0]
    text += ('[tool.flwr.app.components]\nserverapp = "echo_app:server"\nclientapp = "echo_app:client"\n\n'
             f'[tool.flwr.app.config]\nsizes = "{",".join(str(s) for s in SIZES.values())}"\n'
             f'repeats = {repeats}\nout = "{out}"\n')
    (directory / "pyproject.toml").write_text(text)


def bench_flower(workdir: Path, repeats: int) -> dict[str, float]:
    from securegal.deploy.flower.localnet import FlowerLocalFederation

    out = workdir / "flower-echo.json"
    fed = FlowerLocalFederation(workdir / "flower", parties=2)
    with fed:
        _echo_app(fed.app_dir, repeats, out)
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
                                   "out": str(out)})
        return echo_app.main(grid, context)

    from flwr.serverapp import ServerApp
    server = ServerApp()
    server.main()(main)
    run_simulation(server_app=server, client_app=echo_app.client, num_supernodes=1, backend_config=SIMULATION_BACKEND)
    raw = json.loads(out.read_text())
    return {label: statistics.median(raw[str(size)]) for label, size in SIZES.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", choices=("grpc", "flower", "flower-sim"), action="append")
    args = p.parse_args(argv)
    chosen = args.only or ["grpc", "flower", "flower-sim"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="securegal-flower-bench-") as tmp:
        for name, fn in (("grpc", bench_grpc), ("flower", bench_flower), ("flower-sim", bench_simulation)):
            if name in chosen:
                results[name] = fn(Path(tmp), args.repeats)
                print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
