"""``securegal ledger show PATH``: what a table's privacy ledger spent, per session, and what is left."""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    ledger = sub.add_parser("ledger", help="inspect a table's privacy ledger")
    actions = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print what was spent, per session, and what is left")
    show.add_argument("path", type=Path, metavar="PATH", help="the ledger file (party.toml's ledger)")
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.add_argument("--releases", action="store_true", help="also list every release")
    show.set_defaults(func=run)


def format_ledger(ledger, releases: bool = False) -> str:
    """Human-readable summary of a :class:`~securegal.privacy.dp.ledger.Ledger`."""
    b = ledger.budget
    lines = [f"table       {ledger.table}",
             f"budget      epsilon {b.epsilon:g}, delta {b.delta:g} (lifetime, {ledger.accountant})",
             f"spent       {ledger.epsilon_spent:.4f}",
             f"left        {ledger.remaining():.4f}"]
    roles = {role: (ledger.output(f"rows_{role}") or {}) for role in ("trained", "disclosed")}
    if any(roles.values()):
        n = next(r["rows"] for r in roles.values() if r)
        lines.append(f"rows        {roles['trained'].get('count', 0)} of {n} trained on (under the guarantee, never "
                     f"predicted), {roles['disclosed'].get('count', 0)} disclosed by predict replies")
    sessions = ledger.spent_by_session()
    if sessions:
        lines += ["", f"{'session':<24} {'releases':>8} {'eps alone':>10} {'eps after':>10}  "
                  f"{'first':<25} last"]
        for s in sessions:
            lines.append(f"{s.session[:24]:<24} {s.releases:>8} {s.epsilon_alone:>10.4f} "
                         f"{s.epsilon_after:>10.4f}  {s.first:<25} {s.last}")
    else:
        lines.append("no releases yet")
    if releases and ledger.entries:
        lines += ["", f"{'session':<24} {'round':>5} {'kind':<10} {'sensitivity':>11} "
                  f"{'noise mult':>10} {'rate':>6} {'steps':>5}  time"]
        for e in ledger.entries:
            r = e.release
            lines.append(f"{e.session[:24]:<24} {r.round:>5} {r.what[:10]:<10} {r.sensitivity:>11.4g} "
                         f"{r.noise_multiplier:>10.4g} {r.sample_rate:>6.3g} {r.steps:>5}  {e.time}")
    return "\n".join(lines)


def run(args) -> int:
    from ..privacy.dp.ledger import read_ledger

    ledger = read_ledger(args.path)
    if args.json:
        print(json.dumps(ledger.to_dict(), indent=2))
    else:
        print(format_ledger(ledger, releases=args.releases))
    return 0
