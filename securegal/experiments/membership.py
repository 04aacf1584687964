"""PSI membership, run end to end: organizations with partly overlapping tables align by private
set intersection and train; then what one feature party learned about the label owner's set is
scored (``securegal audit --active psi_membership``).

The dataset's rows get random integer IDs. The label owner holds a random ``owner_share`` of
them, the first feature party (the curious one) a random ``party_share``, every other party all
rows, so the label owner's selection tells the curious party exactly which of its rows are in
the label owner's set (the designed disclosure). The curious party's candidates it does *not*
hold are the dataset's other IDs plus made-up IDs held by nobody (as many as make the two
classes even). ``membership.npz`` in the run directory keeps the evaluation-only truth: the
label owner's IDs, the curious party's IDs and its candidates.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..messages import LABEL_OWNER

TRUTH = "membership.npz"
CURIOUS = "party1"
OWNER = LABEL_OWNER


def _write_csv(path: Path, header: list[str], rows: np.ndarray, id_col: np.ndarray) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(",".join(header) + "\n")
        for i, row in zip(id_col.tolist(), rows.tolist()):
            fh.write(f"{i}," + ",".join(repr(float(v)) for v in row) + "\n")


def train_psi_membership(out: Path | str, *, dataset: str | None = "breast_cancer", parties: int = 3,
                         rounds: int = 3, seed: int = 0, owner_share: float = 0.7, party_share: float = 0.5,
                         overwrite: bool = False, progress: bool = False) -> Path:
    """Train the partly overlapping federation into ``out`` and keep the membership truth there."""
    from .. import train
    from ..data.datasets import load_dataset
    from ..data.party_file import read_party_file
    from ..data.split import vertical_split
    from ..deploy.embedded import EmbeddedDeployment
    from ..deploy.federation import party_names

    if dataset is None:
        raise ConfigError("psi_membership needs --dataset NAME (a built-in classification dataset)")
    if parties < 2:
        raise ConfigError(f"psi_membership needs a feature party: --parties >= 2, got {parties}")
    for name, share in (("owner_share", owner_share), ("party_share", party_share)):
        if not 0 < share < 1:
            raise ConfigError(f"{name} must lie strictly between 0 and 1, got {share!r}")
    data = load_dataset(dataset)
    if data.task != "classification":
        raise ConfigError(f"psi_membership trains a classification task; {dataset!r} is a {data.task}")
    n = data.X.shape[0]
    rng = np.random.default_rng([seed, 0x951])
    ids = rng.choice(9_000_000, size=n, replace=False).astype(np.int64) + 1_000_000
    owner_rows = rng.random(n) < owner_share
    party_rows = rng.random(n) < party_share
    blocks = vertical_split(data, parties)
    names = [OWNER] + party_names(parties)[1:]
    with tempfile.TemporaryDirectory(prefix="securegal-psi-membership-") as tmp:
        tmp = Path(tmp)
        cols = blocks[0].columns
        _write_csv(tmp / f"{OWNER}.csv", ["id"] + [f"x{j}" for j in cols] + ["label"],
                   np.column_stack([data.X[owner_rows][:, cols], data.y[owner_rows]]), ids[owner_rows])
        tables = {}
        for i in range(1, parties):
            keep = party_rows if names[i] == CURIOUS else np.ones(n, dtype=bool)
            cols = blocks[i].columns
            path = tmp / f"{names[i]}.csv"
            _write_csv(path, ["id"] + [f"x{j}" for j in cols], data.X[keep][:, cols], ids[keep])
            tables[names[i]] = read_party_file(path, "id")
        train(csv=tmp / f"{OWNER}.csv", target="label", id_column="id", parties=parties, rounds=rounds, seed=seed,
              deployment=EmbeddedDeployment(tables, owner=OWNER), out=out, overwrite=overwrite, progress=progress)
    held = ids[party_rows]
    unheld = ids[~party_rows]
    in_x = int(np.isin(unheld, ids[owner_rows]).sum())
    extra = max(in_x - (unheld.size - in_x), 0)
    outsiders = np.setdiff1d(rng.choice(9_000_000, size=2 * extra + 16, replace=False) + 1_000_000, ids)[:extra]
    np.savez(Path(out) / TRUTH, owner_ids=ids[owner_rows], party_ids=held,
             candidates=np.concatenate([unheld, outsiders.astype(np.int64)]), party=np.array(CURIOUS),
             dataset=np.array(dataset))
    return Path(out)


def audit_psi_membership(run_dir: Path | str, report: bool = True) -> dict:
    """Score what the curious party learned about the label owner's set from its own transcript
    (PSI request, its alignment record) against ``membership.npz``; writes ``audit.json`` (and
    ``audit.md`` / ``audit.html``) into ``run_dir`` and returns the audit."""
    from ..align import group
    from ..align.ids import canonical_ids
    from ..attacks import audit, psi_membership
    from ..transcript import read_alignment, read_transcript

    run_dir = Path(run_dir)
    path = run_dir / TRUTH
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {TRUTH}: not a psi_membership run (securegal audit --active "
                          "psi_membership --out DIR trains one)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            owner_ids, party_ids, candidates = npz["owner_ids"], npz["party_ids"], npz["candidates"]
            party, dataset = str(npz["party"]), str(npz["dataset"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path} is unreadable or incomplete ({exc})") from None
    tr = read_transcript(run_dir / "transcripts" / party)
    request = next(tr.select("psi_request", "received"), None)
    if request is None:
        raise audit.NothingReleased(f"transcript of {party!r} holds no PSI request")
    session, owner = request.session, request.sender
    alignment = read_alignment(run_dir / "transcripts" / party, owner, session)
    if alignment is None:
        raise ConfigError(f"{party}'s transcript keeps no alignment record for session {session!r}")
    _, selected_ids = alignment
    body = request.envelope.body
    _, canonical = canonical_ids(candidates)
    candidate_points = group.hash_to_group(group.hash_prefix(body.session), canonical)
    results = (psi_membership.held(party_ids, selected_ids, np.isin(party_ids, owner_ids), party, owner)
               + psi_membership.unheld(candidate_points, body.points, np.isin(candidates, owner_ids), party, owner))
    rows = [audit.AuditRow(r, "PSI messages and the party's alignment record") for r in results]
    result = {
        "kind": "active", "run": str(run_dir), "dataset": f"{dataset} (partly overlapping tables)",
        "task": "membership", "residuals": "plain",
        "epsilon": float("inf"), "layers": {"residuals": "plain", "mode": "ECDH-PSI alignment", "epsilon": float("inf"),
                                            "feature_dp_epsilon": {}, "label_dp_epsilon": None},
        "privacy": {}, "known_labels": 0.0, "known_rows": 0.0, "seed": 0,
        "n_train": int(party_ids.size), "label_owner_set": int(len(body.points) // psi_membership.POINT),
        "party_rows": int(party_ids.size), "selected_rows": int(np.asarray(selected_ids).size),
        "candidates": int(candidates.size), "nothing_to_attack": [],
        "notes": [f"{party} learns the size of {owner}'s set ({len(body.points) // psi_membership.POINT} IDs) and "
                  f"which of its own {party_ids.size} rows are used ({np.asarray(selected_ids).size}): the PSI's "
                  "designed disclosure. Rows another party lacks are not selected either, so 'not selected' "
                  "means 'not in the label owner's set' only when every other party holds the row (as here)."],
        "command": f"securegal audit --active psi_membership --out {run_dir}",
    }
    audit.finish_audit(result, rows)
    audit.write_audit(run_dir, result, report)
    return result
