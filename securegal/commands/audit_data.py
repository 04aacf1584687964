"""A party's own data for ``securegal audit --as NAME --data PATH``: a CSV or the party's config.

- ``PATH.csv`` (or ``.parquet``): a header row. ``--id-column`` names the sample-ID column
  (default ``id`` when present; without one, rows are numbered 0..n-1 as the networked label
  owner does); ``--target`` names the label column (the label owner's audit). The table is read
  as the party's own process reads it (``read_party_file``: text or integer IDs, categories
  encoded); the audit encodes class labels (text or numbers) as training does, in sorted order. Every other column
  is a feature.
- ``PATH.toml``: the party's own config. A ``party.toml``'s ``[data]`` (``csv`` + ``id_column``,
  or the built-in ``dataset``/``parties``/``block``), or the label owner's ``federation.toml``
  (``dataset``, or ``csv`` + ``target`` and ``id_column`` if it has one, else rows numbered
  0..n-1; its block 0 of a built-in split).
  A feature party's ``party.toml`` with a DP budget (``[privacy] epsilon``) also names its table's
  privacy ledger, found where the party process keeps it (``privacy.ledger``, else beside its
  CSV, else beside its transcripts): the audit reports what it spent.
"""
from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import numpy as np

from ..errors import ConfigError


def from_csv(path: Path, id_column: str | None, target: str | None):
    """``OwnData`` from a CSV or Parquet table, read exactly as the party's process reads it (see
    the module notes)."""
    from securegal.attacks.self_audit import OwnData
    from securegal.data.party_file import read_party_file

    if not path.is_file():
        raise ConfigError(f"--data {str(path)!r} does not exist")
    columns = _columns(path)
    for flag, name in (("id column", id_column), ("column named", target)):
        if name is not None and name not in columns:
            raise ConfigError(f"{path}: no {flag} {name!r}; columns are {', '.join(columns)}")
    id_name = id_column or ("id" if "id" in columns else None)
    if target is None:  # a feature party's table
        table = read_party_file(path, id_name)
        return OwnData(table.ids if id_name else np.arange(len(table.X)), table.X, None, source=str(path))
    table = read_party_file(path, id_name, target=target, label_owner=True)
    labels = np.asarray(table.target)  # classes are encoded by the audit, which knows the run's task
    labels = labels.astype(str) if labels.dtype.kind in "OUS" else labels.astype(np.float64)
    return OwnData(table.ids if id_name else np.arange(len(labels)), table.X, labels, source=str(path))


def _columns(path: Path) -> list[str]:
    """The column names of a CSV (its header row) or Parquet file."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise ConfigError(f"{path}: not a Parquet file ({type(exc).__name__})") from None
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = [h.strip() for h in next(csv.reader(fh), [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: not a UTF-8 CSV file ({type(exc).__name__})") from None
    if not header:
        raise ConfigError(f"{path}: empty file, expected a header row")
    return header


def from_toml(path: Path, id_column: str | None, target: str | None, party: str | None = None):
    """``OwnData`` from a ``party.toml`` or ``federation.toml`` (see the module notes); a config
    of another organization than ``party`` (``--as``) is refused: its table is not the one that
    party's transcript is about."""
    from securegal.attacks.self_audit import OwnData
    from securegal.data.datasets import load_csv, load_dataset
    from securegal.data.split import vertical_split
    from securegal.deploy.config import FederationFile

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--data {path}: not a readable TOML config ({exc})") from None
    section = doc.get("data")
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: no [data] table (expected a party.toml or federation.toml)")
    is_owner = "party" in doc  # federation.toml lists its [[party]] peers
    named = doc.get("name", FederationFile.model_fields["name"].default if is_owner else None)
    if party is not None and isinstance(named, str) and named != party:
        raise ConfigError(f"--data {path} is the config of {named!r}, not of {party!r} (--as): audit each party "
                          "with its own data")
    ledger = None if is_owner else _ledger_path(doc, path)
    transcript = path.parent / str(doc["transcripts"]) if not is_owner and doc.get("transcripts") else None
    if "csv" in section:
        csv_path = (path.parent / section["csv"]).resolve()
        if is_owner and (id_column or section.get("id_column")):  # its rows named by their IDs, as in training
            return from_csv(csv_path, id_column or section["id_column"], target or section.get("target"))
        if is_owner:
            ds = load_csv(csv_path, target or section.get("target"))
            return OwnData(np.arange(len(ds.y)), ds.X, ds.y, source=f"{csv_path} (from {path})")
        own = from_csv(csv_path, id_column or section.get("id_column", "id"), target)
        return OwnData(own.ids, own.features, own.labels, source=own.source, privacy=_ledger_reader(ledger),
                       transcript=transcript)
    if "dataset" not in section:
        raise ConfigError(f"{path}: [data] needs 'csv' or 'dataset'")
    ds = load_dataset(section["dataset"])
    ids = np.arange(len(ds.y))
    if is_owner:
        blocks = vertical_split(ds, 1 + len(doc["party"]))
        return OwnData(ids, ds.X[:, blocks[0].columns], ds.y, source=f"{section['dataset']} block 0 (from {path})")
    try:
        parties, block = int(section["parties"]), int(section["block"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: [data] with 'dataset' needs integer 'parties' and 'block'") from None
    if not 1 <= block < parties:
        raise ConfigError(f"{path}: block must be in 1..{parties - 1}, got {block}")
    columns = vertical_split(ds, parties)[block].columns
    return OwnData(ids, ds.X[:, columns], None, source=f"{section['dataset']} block {block} (from {path})",
                   privacy=_ledger_reader(ledger), transcript=transcript)


def _ledger_path(doc: dict, path: Path) -> Path | None:
    """Where a DP party's process keeps its table's ledger (as ``securegal party serve`` finds it);
    None without a DP budget."""
    privacy = doc.get("privacy") if isinstance(doc.get("privacy"), dict) else {}
    if privacy.get("epsilon") is None:
        return None
    base, data = path.parent, doc.get("data") or {}
    if privacy.get("ledger"):
        return base / str(privacy["ledger"])
    if data.get("csv"):
        return base / (str(data["csv"]) + ".securegal-ledger.json")
    if doc.get("transcripts"):
        return base / str(doc["transcripts"]) / f"{doc.get('name')}.securegal-ledger.json"
    raise ConfigError(f"{path}: a DP party on a built-in dataset names its ledger in privacy.ledger (or "
                      "transcripts, beside which it defaults); the audit cannot find what it spent")


def load_own_data(path: Path, id_column: str | None = None, target: str | None = None,
                  ledger: Path | None = None, party: str | None = None):
    """The party's own rows from ``--data PATH`` (CSV or TOML config); ``ledger`` (``--ledger``)
    names its privacy ledger file, overriding the config's. A config naming another party than
    ``party`` (``--as``) is refused: its table is not the one that party's transcript is about."""
    from securegal.attacks.self_audit import OwnData

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--data {str(path)!r} does not exist")
    own = from_toml(path, id_column, target, party) if path.suffix.lower() == ".toml" \
        else from_csv(path, id_column, target)
    if ledger is None:
        return own
    if not Path(ledger).is_file():
        raise ConfigError(f"--ledger {str(ledger)!r} does not exist")
    return OwnData(own.ids, own.features, own.labels, source=own.source, privacy=_ledger_reader(Path(ledger)),
                   transcript=own.transcript)


def _ledger_reader(path: Path | None):
    return None if path is None else (lambda session: ledger_block(path, session))


def ledger_block(path: Path, session: str | None) -> dict:
    """A DP party's privacy block from its own ledger file: the table's lifetime budget, what
    every session spent, and what the audited run's ``session`` spent (the party's own record,
    which needs no label owner's ``metrics.json``)."""
    from ..privacy.dp.ledger import read_ledger

    if not Path(path).is_file():
        raise ConfigError(f"privacy ledger {str(path)!r} does not exist: a DP party keeps one per table "
                          "(give --ledger PATH, or audit with the party.toml the process ran with)")
    ledger = read_ledger(path)
    sessions = ledger.spent_by_session()
    this = next((sp for sp in sessions if sp.session == session), None)
    releases = [e for e in ledger.entries if e.session == session]
    if session is not None and not releases:
        raise ConfigError(f"privacy ledger {path} holds no release of session {session} (it has {len(sessions)} "
                          "other sessions): it is not the ledger of the table that served this transcript; give the "
                          "party's own --ledger")
    noise = {}
    for e in releases:
        noise.setdefault(e.release.what, e.release.noise_multiplier)
    return {"epsilon_budget": ledger.budget.epsilon, "delta": ledger.budget.delta,
            "epsilon_spent": ledger.epsilon_spent, "epsilon_remaining": ledger.remaining(),
            "epsilon_this_session": this.epsilon_alone if this is not None else 0.0,
            "accountant": ledger.accountant, "noise_multiplier": noise,
            "releases": [e.to_dict() for e in releases], "sessions": len(sessions),
            "source": f"ledger {path}"}
