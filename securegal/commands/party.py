"""``securegal party serve --config party.toml``: run one organization's feature party."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    party = sub.add_parser("party", description="Run one organization's feature party behind gRPC with "
                           "mutual TLS.")
    actions = party.add_subparsers(dest="party_command", required=True, metavar="ACTION")
    serve = actions.add_parser("serve", help="serve the party described by a party.toml until stopped (SIGTERM)")
    serve.add_argument("--config", type=Path, required=True, metavar="PATH",
                       help="party.toml: name, listen address, data, learner, privacy, tls (cert, key, CA)")
    serve.add_argument("--once", action="store_true",
                       help="exit after the label owner finishes its session (or after a refused setup)")
    serve.add_argument("--insecure", action="store_true",
                       help="no TLS, no peer authentication: loopback demos only (refused elsewhere, warns loudly)")
    serve.set_defaults(func=run)


def run(args) -> int:
    from ..deploy.party_process import serve_party_cli

    return serve_party_cli(args.config, once=args.once, insecure=args.insecure)
