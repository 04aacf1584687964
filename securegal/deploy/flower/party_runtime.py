"""The long-lived half of a feature party under Flower's deployment runtime.

flwr 1.42 starts a fresh ``flwr-clientapp`` process for every message (both ``--isolation
subprocess`` and ``--isolation process``), so a ClientApp cannot keep the party's round models,
trainer and DP ledger between messages. This process keeps them: it serves the party's
:class:`~securegal.parties.endpoint.PartyEndpoint` on ``listen`` of its ``party.toml`` with mutual
TLS, accepting only a client that presents the organization's OWN certificate, i.e. that
organization's ClientApp (node config ``party-runtime = "host:port"``). Run it beside the
SuperNode:

    python -m securegal.deploy.flower.party_runtime --config party.toml
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from ..party_process import PartyConfig, serve_party
from ..ready import ready_line


def serve_runtime(cfg: PartyConfig, stop: threading.Event, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve the party's endpoint to its own ClientApp (which holds this organization's own
    certificate) until ``stop`` is set."""
    serve_party(cfg, stop=stop, on_ready=on_ready, client=cfg.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True, help="the party's party.toml")
    p.add_argument("--insecure", action="store_true", help="no TLS (loopback demos only)")
    args = p.parse_args(argv)
    cfg = PartyConfig.load(args.config, insecure=args.insecure)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve_runtime(cfg, stop, on_ready=lambda port: print(ready_line(f"party runtime {cfg.name}", port), flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
