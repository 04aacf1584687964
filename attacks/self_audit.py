"""Self-audit: one organization measures its own exposure from its own transcript and its own data.

No shared ground truth: in a real deployment nobody holds everyone's data. What a party has is
its transcript (``RUN_DIR/transcripts/NAME``, kept by every party process) and its own table:

- a **feature party** asks how well the label owner could rebuild its columns from what the
  party sent: the hat-matrix and inversion-network attacks run on its own ``fit_reply``
  payloads and are scored against its own table (the training rows named by ``train_ids`` in
  the Setup it received);
- the **label owner** asks how well each feature party could read the labels from what it
  received: label inversion and clustering run on the ``fit_request`` payloads it sent to that
  party (ciphertext bytes under CKKS, exactly what the party got) and are scored against its own
  labels. Model completion needs the feature party's columns, which the label owner does not
  hold, so it is left out (noted in the report).

Side knowledge is declared as for the embedded audit (a fraction of known labels or known
rows, drawn with the same seeded rule). A feature party whose replies are CKKS ciphertexts
cannot see what the label owner decrypts; its audit attacks a stand-in: random combinations
of its own standardized columns, which is what a linear learner's replies span (a worst case
for the default linear learner; it overstates when DP noise was added before encryption).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from securegal.errors import ConfigError, printable
from securegal.transcript import read_alignment, Transcript, read_transcript

from .audit import (NothingReleased, _setup, _standardize_truth, _view_name, check_fraction, finish_audit,
                    layers_in_force, privacy_block, run_jobs, score_feature_attacks, score_label_attacks,
                    write_audit)
from .views import as_array, is_encrypted

LABEL_OWNER, FEATURE_PARTY = "label owner", "feature party"


@dataclass(frozen=True)
class OwnData:
    """A party's own rows: ``ids`` (int64 or text sample IDs, as its table holds them) with its
    ``features`` (n, d) and, for the label owner, its ``labels`` (n,). ``source`` names where they
    came from (for messages)."""

    ids: np.ndarray
    features: np.ndarray | None = None
    labels: np.ndarray | None = None
    source: str = "the data file"
    # A DP feature party's own ledger: its privacy block, or a function of the run's session
    # giving it (securegal.commands.audit_data.ledger_block reads the ledger file).
    privacy: dict | Callable[[str], dict] | None = None
    # Where the party's own config keeps its transcript (a party.toml's ``transcripts``), read
    # when the run directory does not hold it.
    transcript: Path | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.ndim != 1 or ids.size == 0:
            raise ConfigError(f"{self.source}: needs a non-empty column of sample IDs")
        if ids.dtype.kind in "OUS":
            ids = ids.astype(str)
        elif not np.array_equal(ids, np.round(ids)):
            raise ConfigError(f"{self.source}: sample IDs must be integers or text")
        else:
            ids = ids.astype(np.int64)
        if np.unique(ids).size != ids.size:
            raise ConfigError(f"{self.source}: sample IDs must be unique")
        for name in ("features", "labels"):
            value = getattr(self, name)
            if value is not None and np.asarray(value).shape[0] != ids.size:
                raise ConfigError(f"{self.source}: {name} have {np.asarray(value).shape[0]} rows, IDs {ids.size}")
        if self.features is not None:
            X = np.asarray(self.features)
            if X.dtype.kind not in "biuf":
                raise ConfigError(f"{self.source}: features must be numbers, got dtype {X.dtype}")
            bad = np.argwhere(~np.isfinite(X.astype(np.float64)))
            if bad.size:
                row, column = (int(v) for v in bad[0][:2]) if X.ndim == 2 else (int(bad[0][0]), 0)
                raise ConfigError(f"{self.source}: features hold {len(bad)} missing or infinite value(s) (the first: "
                                  f"row {row}, column {column}, counting from 0); the audit compares finite values")
        object.__setattr__(self, "ids", ids)

    def rows(self, train_ids: np.ndarray, party: str) -> np.ndarray:
        """Positions of the transcript's ``train_ids`` in this data; every ID must be present."""
        train_ids = np.asarray(train_ids)
        if self.ids.dtype.kind == "U":
            train_ids = train_ids.astype(str)
        elif train_ids.dtype.kind in "iu":
            train_ids = train_ids.astype(np.int64)
        else:  # text IDs in the transcript's alignment record, integer IDs in the data
            raise ConfigError(f"{self.source} does not match the transcript of {party!r}: its IDs are integers, "
                              f"the run named its rows by text IDs (first: {train_ids[0]!r:.40})")
        order = np.argsort(self.ids)
        pos = order[np.clip(np.searchsorted(self.ids, train_ids, sorter=order), 0, self.ids.size - 1)]
        missing = self.ids[pos] != train_ids
        if missing.any():
            raise ConfigError(f"{self.source} does not match the transcript of {party!r}: "
                              f"{int(missing.sum())} of its {train_ids.size} training IDs are not in the data "
                              f"(first: {train_ids[missing][0]!r:.40})")
        return pos


def transcript_parties(run_dir: Path | str) -> list[str]:
    """Names of the parties whose transcripts ``run_dir/transcripts`` holds."""
    root = Path(run_dir) / "transcripts"
    if not Path(run_dir).is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    if not root.is_dir():
        raise ConfigError(f"{run_dir} has no transcripts/ directory: nothing to audit")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise ConfigError(f"{root} holds no party transcripts")
    return names


def role(tr: Transcript) -> str:
    """Whether the transcript's owner sent Setup (label owner) or received it (feature party)."""
    if any(True for _ in tr.select("setup", "sent")):
        return LABEL_OWNER
    if any(True for _ in tr.select("setup", "received")):
        return FEATURE_PARTY
    raise ConfigError(f"transcript of {tr.party!r} holds no setup message: not a GAL session")


def _metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is malformed ({exc})") from None


def _own_ids(transcript_dir: Path, party: str, peer: str, setup_record, ids: np.ndarray) -> np.ndarray:
    """The party's own IDs of rows the transcript names by this session's handles (from the
    alignment record the party kept beside its transcript); ``ids`` unchanged without one."""
    record = read_alignment(transcript_dir, peer, setup_record.envelope.session)
    if record is None:
        return ids
    handles, own = record
    order = np.argsort(handles)
    pos = order[np.clip(np.searchsorted(handles, ids, sorter=order), 0, handles.size - 1)]
    if np.any(handles[pos] != ids):
        raise ConfigError(f"{party}'s alignment record does not name every training row of the transcript")
    return own[pos]


def _label_jobs(tr: Transcript, data: OwnData, metrics: dict, known_labels: float, seed: int, transcript_dir: Path):
    if data.labels is None:
        raise ConfigError(f"{data.source}: the label owner's audit needs its labels (give --target COL)")
    peers = sorted({rec.receiver for rec in tr.select("setup", "sent")})
    task = metrics.get("task")

    def job(peer: str):
        setup = _setup(tr, "sent", peer)
        record = next(r for r in tr.select("setup", "sent") if r.receiver == peer)
        ids = _own_ids(transcript_dir, tr.party, peer, record, np.asarray(setup.train_ids, dtype=np.int64))
        n, k = ids.size, int(setup.n_outputs)
        payloads = [rec.payload for rec in tr.select("fit_request", "sent") if rec.receiver == peer]
        if not payloads:
            raise NothingReleased(f"{tr.party!r} sent no residuals (fit_request) to {peer!r}")
        t = task or setup.task
        if t == "classification":  # the classes in sorted order over the whole file, as training encodes them
            classes, codes = np.unique(np.asarray(data.labels), return_inverse=True)
            if len(classes) > max(k, 2):
                raise ConfigError(f"{data.source}: {len(classes)} label classes, this run has {max(k, 2)}")
            truth = codes[data.rows(ids, tr.party)].astype(np.int64)
        else:
            truth = data.labels[data.rows(ids, tr.party)]
            if truth.dtype.kind == "U":
                raise ConfigError(f"{data.source}: this run is a regression; its labels must be numbers")
        return score_label_attacks([as_array(p, (n, k)) for p in payloads], t, k, truth, None, peer, tr.party,
                                   known_labels, seed, _view_name(payloads), privacy_block(metrics, tr.party))

    return [(f"labels:{peer}", lambda peer=peer: job(peer)) for peer in peers]


def _feature_job(tr: Transcript, data: OwnData, metrics: dict, known_rows: float, seed: int, steps: int,
                 transcript_dir: Path):
    if data.features is None or np.asarray(data.features).shape[1] == 0:
        raise ConfigError(f"{data.source}: a feature party's audit needs its feature columns")
    setup = _setup(tr, "received")
    record = next(tr.select("setup", "received"))
    ids = _own_ids(transcript_dir, tr.party, record.sender, record, np.asarray(setup.train_ids, dtype=np.int64))
    n, k = ids.size, int(setup.n_outputs)
    payloads = [rec.payload for rec in tr.select("fit_reply", "sent")]
    if not payloads:
        raise NothingReleased(f"{tr.party!r} sent no predictions (fit_reply)")
    X = _standardize_truth(np.asarray(data.features, dtype=np.float64)[data.rows(ids, tr.party)])
    owner = next(rec.sender for rec in tr.select("setup", "received"))
    view = _view_name(payloads)
    overstates = False
    if any(is_encrypted(p) for p in payloads):
        releases = _own_releases(tr, privacy_block(metrics, tr.party))
        if releases is not None and "pred" not in releases:
            # A DP party without feedback encrypts zeros (its own report lists no `pred` release):
            # the label owner decrypts exactly that, as the embedded audit's recorded view shows.
            rounds = [np.zeros((n, k)) for _ in payloads]
            view = f"{view}: encryptions of zero (this DP party released no per-row predictions: no feedback)"
        else:
            # The label owner decrypts these; the party cannot. Attack the span a linear learner's
            # replies cover: k random combinations of [X, 1] per round (without any DP noise).
            rng = np.random.default_rng([seed, 0x5eed])
            design = np.column_stack([X, np.ones(n)])
            rounds = [design @ rng.standard_normal((design.shape[1], k)) for _ in payloads]
            overstates = releases is not None
            view = (f"stand-in for the label owner's decryption of {view}: what a linear learner's replies "
                    "span (worst case for the linear learner" + (", without the party's DP noise)" if overstates
                                                                  else ")"))
    else:
        rounds = [as_array(p, (n, k)) for p in payloads]
    return [(f"features:{tr.party}", lambda: score_feature_attacks(
        rounds, X, owner, tr.party, known_rows, seed, steps, view, privacy=privacy_block(metrics, tr.party),
        overstates=overstates))]


def _own_releases(tr: Transcript, block: dict | None) -> set[str] | None:
    """The kinds of release a DP party's own privacy report lists (the one in the replies it sent,
    else ``block``, its report in the run's metrics or its ledger); None when neither holds one."""
    report = block
    for rec in reversed(list(tr.select("fit_reply", "sent"))):
        raw = rec.envelope.body.info.get("privacy")
        if raw:
            try:
                report = json.loads(raw)
            except ValueError:
                report = None
            break
    releases = report.get("releases") if isinstance(report, dict) else None
    if not isinstance(releases, list):
        return None
    return {r.get("what") for r in releases if isinstance(r, dict)}


def self_audit(run_dir: Path | str, party: str, data: OwnData, *, known_labels: float = 0.05,
               known_rows: float = 0.05, seed: int = 0, steps: int = 1500, out: Path | str | None = None,
               progress: bool | None = None, report: bool = True, data_command: str = "",
               session: str | None = None) -> dict:
    """Audit ``party``'s exposure from its transcript under ``run_dir`` and its own ``data``;
    writes ``audit.json`` (+ ``audit.md``, ``audit.html``) into ``out`` (default
    ``run_dir/self-audit/<party>``) and returns the audit. A transcript of several sessions (a
    party process serves one after another) is audited one session at a time: ``session``, by
    default the latest that trained. The transcript is ``run_dir/transcripts/<party>``, else
    where ``data`` says its config keeps it (``OwnData.transcript``)."""
    known_labels = check_fraction("--known-labels", known_labels)
    known_rows = check_fraction("--known-rows", known_rows)
    shown = Path(run_dir)  # as given: the report and its commands name it so
    if not shown.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    run_dir = shown.resolve()
    transcript = None if (run_dir / "transcripts" / party).is_dir() else data.transcript
    if transcript is None:
        names = transcript_parties(run_dir)
        if party not in names:
            raise ConfigError(f"--as {party!r}: no such party in {run_dir}/transcripts (parties: {', '.join(names)})")
        transcript = run_dir / "transcripts" / party
    transcript_dir = Path(transcript)
    tr = read_transcript(transcript_dir)
    if tr.party != party:  # a transcript is named by its directory, which a party.toml may name otherwise
        tr = replace(tr, party=party)
    sessions = tr.sessions
    if session is not None and session not in sessions:
        raise ConfigError(f"--session {session!r}: {party}'s transcript holds sessions {', '.join(sessions[-10:])}"
                          + (f" (the last 10 of {len(sessions)})" if len(sessions) > 10 else ""))
    # by default the latest session that trained (a session a party refused holds no fits to attack)
    fitted = list(dict.fromkeys(r.session for r in tr.records if r.kind in ("fit_request", "fit_reply")))
    session = session or (fitted or sessions or [None])[-1]
    if len(sessions) > 1:
        tr = tr.of_session(session)
    who = role(tr)
    if who == FEATURE_PARTY and not any(r.direction == "sent" and r.kind in ("fit_reply", "predict_reply")
                                        for r in tr.records):
        refusal = next((r.envelope.body for r in tr.select("error", "sent")), None)
        why = f" (it answered {refusal.code}: {printable(refusal.message)})" if refusal is not None else ""
        raise NothingReleased(f"session {session}: {party} released nothing in it{why}, so there is nothing to audit; "
                          f"the sessions it trained in: {', '.join(fitted[-10:]) or 'none'}")
    metrics = _metrics(run_dir)
    found_metrics = bool(metrics)
    if data.privacy is not None and who == LABEL_OWNER:
        raise ConfigError(f"--ledger is a DP feature party's table ledger; {party!r} is the label owner (its "
                          "label-DP spend is in the run's metrics.json)")
    if data.privacy is not None and who == FEATURE_PARTY:  # the party's own record of what it spent
        setup_record = next(tr.select("setup", "received"))
        block = data.privacy(setup_record.session) if callable(data.privacy) else dict(data.privacy)
        metrics = {**metrics, "privacy": {**(metrics.get("privacy") or {}), party: block}}
        if not metrics.get("party_names"):
            metrics["party_names"] = [setup_record.sender, party]
    if who == LABEL_OWNER:
        jobs = _label_jobs(tr, data, metrics, known_labels, seed, transcript_dir)
    else:
        jobs = _feature_job(tr, data, metrics, known_rows, seed, steps, transcript_dir)
    rows, timings, skipped = run_jobs(jobs, progress)
    setup = next(iter(tr.select("setup")), None)
    residuals = metrics.get("residuals") or (setup.envelope.body.residuals if setup is not None else "unknown")
    layer_source = {**metrics, "residuals": residuals}
    if not found_metrics and data.privacy is None:
        layer_source["privacy"] = {}
    elif who == FEATURE_PARTY:  # its own view: not the other parties' budgets, were their metrics at hand
        owner = (metrics.get("party_names") or [None])[0]
        layer_source["privacy"] = {p: b for p, b in (layer_source.get("privacy") or {}).items() if p in (party, owner)}
    notes = []
    if len(sessions) > 1:
        notes.append(f"{party}'s transcript holds {len(sessions)} sessions; this audit is of session {session} "
                     "(--session picks another)")
    if who == LABEL_OWNER:
        notes.append("model completion is not run: it needs each feature party's own columns, which the label "
                     "owner does not hold (the feature party can run it on the embedded path)")
    own_block = (metrics.get("privacy") or {}).get(party)
    if isinstance(own_block, dict) and "epsilon_this_session" in own_block:
        notes.append(f"{party}'s privacy ledger ({own_block['source']}): lifetime budget epsilon "
                     f"{own_block['epsilon_budget']:g} (delta {own_block['delta']:g}, {own_block['accountant']}), "
                     f"{own_block['epsilon_this_session']:.4g} spent by this run's session, "
                     f"{own_block['epsilon_spent']:.4g} over all {own_block['sessions']} sessions, "
                     f"{own_block['epsilon_remaining']:.4g} left")
    if not found_metrics:
        notes.append(f"{run_dir}/metrics.json is not here: the layers in force are read from the transcript's "
                     "Setup only" + (", and this party's DP budget from its own ledger"
                                      if data.privacy is not None and who == FEATURE_PARTY
                                      else ", and DP budgets are not known to this audit"))
    audit = {
        "kind": "self", "party": party, "role": who, "run": str(shown), "dataset": metrics.get("dataset"),
        "task": metrics.get("task") or (setup.envelope.body.task if setup is not None else None),
        "residuals": residuals, "layers": layers_in_force(layer_source, party if who == LABEL_OWNER else None),
        "privacy": {p: b for p, b in (metrics.get("privacy") or {}).items() if p == party},
        "data": data.source, "known_labels": known_labels, "known_rows": known_rows, "seed": seed,
        "n_train": int(np.asarray(_setup(tr, "sent" if who == LABEL_OWNER else "received").train_ids).size),
        "seconds": timings, "nothing_to_attack": skipped, "notes": notes,
        "session": session,
        "command": f"securegal audit {shown} --as {party} {data_command}".rstrip()
                   + (f" --session {session}" if len(sessions) > 1 else "")
                   + f" --known-labels {known_labels:g} --known-rows {known_rows:g} --seed {seed}",
    }
    audit["epsilon"] = audit["layers"]["epsilon"]
    finish_audit(audit, rows)
    write_audit(Path(out) if out is not None else run_dir / "self-audit" / party, audit, report)
    return audit
