"""``securegal certs init DIR --parties a,b,c``: a development CA and one certificate per organization;
``securegal certs server DIR --hosts H,IP``: a server certificate (Flower's SuperLink) signed by it."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def add_parser(sub) -> None:
    certs = sub.add_parser("certs", description="Development certificates for a federation "
                           "(for production, use your organizations' own PKI).")
    actions = certs.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="make a development CA and one certificate per organization")
    init.add_argument("directory", type=Path, help="output directory (existing files are never overwritten)")
    init.add_argument("--parties", required=True, metavar="NAMES", help="comma-separated organization names, e.g. alice,party1,party2")
    init.add_argument("--days", type=int, default=365, metavar="N", help="validity in days")
    init.set_defaults(func=run)
    server = actions.add_parser("server", help="a TLS server certificate signed by that CA (e.g. Flower's SuperLink)")
    server.add_argument("directory", type=Path, help="the directory of `certs init` (its ca.pem and ca.key)")
    server.add_argument("--name", default="superlink", help="file name and certificate name (default: superlink)")
    server.add_argument("--hosts", required=True, metavar="HOSTS",
                        help="comma-separated host names and IP addresses the server is reached by, e.g. "
                             "linkhost.example.org,127.0.0.1 (Flower's SuperExec reaches its SuperLink by IP)")
    server.add_argument("--days", type=int, default=365, metavar="N", help="validity in days")
    server.set_defaults(func=run_server)


def run(args) -> int:
    from ..transport.certs import init_federation

    if args.days < 1:
        raise ConfigError(f"--days must be >= 1, got {args.days}")
    parties = [p.strip() for p in args.parties.split(",") if p.strip()]
    paths = init_federation(args.directory, parties, days=args.days)
    print(f"wrote CA {args.directory / 'ca.pem'} and certificates for {', '.join(paths)} "
          f"(keys are 0600; do not commit them)")
    return 0


def run_server(args) -> int:
    from ..transport.certs import init_server

    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    path = init_server(args.directory, args.name, hosts, days=args.days)
    print(f"wrote {path} and its key (0600) for {', '.join(hosts)}, signed by {args.directory / 'ca.pem'}")
    return 0
