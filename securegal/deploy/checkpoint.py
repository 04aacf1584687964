"""The networked label owner's checkpoint: ``<out>/checkpoint/`` after setup and every round."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..parties.label_owner import LabelOwner, RoundResult
from ..files import private_dir, write_bytes_atomic, write_json_atomic

CHECKPOINT_FORMAT = "securegal-checkpoint"
# 2: the command-line overrides are kept; 3: training rows in the label owner's wire order (its
# checkpointed F follows that order, so an older checkpoint cannot be resumed)
CHECKPOINT_VERSION = 3
ALIGNMENT = "alignment.npz"  # the session's row alignment: common rows and each party's handles


class Checkpoint:
    """``<out>/checkpoint/``: ``state.json`` (session, seq epoch, rounds, overrides, whether the
    parties were being told to finish) and ``F_<t>.npy`` (F after round t).

    Written after setup, after every round and just before Finish; ``state.json`` is replaced
    atomically and names only F files that are already on disk, so a crash at any point leaves a
    usable checkpoint.
    """

    def __init__(self, out: Path, config_path: Path, config_text: str, overrides: dict | None = None):
        self.dir = Path(out) / "checkpoint"
        self.config_path = str(config_path)
        self.overrides = dict(overrides or {})
        self.finishing = False  # set just before the parties are told the session is finished
        self.digest = hashlib.sha256(config_text.encode()).hexdigest()
        self.epoch = 0

    def save(self, owner: LabelOwner) -> None:
        private_dir(self.dir)
        alignment = owner.alignment_state()
        if alignment and not (self.dir / ALIGNMENT).exists():  # fixed for the session: written once
            write_bytes_atomic(self.dir / ALIGNMENT, lambda fh: np.savez(fh, **alignment))
        t = len(owner.model.rounds)
        write_bytes_atomic(self.dir / f"F_{t:04d}.npy", lambda fh: np.save(fh, owner.F, allow_pickle=False))
        state = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": self.config_path,
            "config_sha256": self.digest, "overrides": self.overrides, "finishing": self.finishing,
            "session": owner.session, "epoch": self.epoch, "peers": owner.peers,
            "weighting": owner.weighting, "eta": owner.eta, "calibration": owner.calibration,
            "party_columns": owner.party_columns,
            "rounds": [{"round": r.round, "weights": r.weights, "eta": r.eta, "train_loss": r.train_loss,
                        "absent": list(r.absent)} for r in owner.model.rounds],
        }
        write_json_atomic(self.dir / "state.json", state)

    def mark_finishing(self, owner: LabelOwner) -> None:
        """Note that the parties are about to be told the session is finished: a label owner that
        stops after that cannot resume (the parties no longer answer for the session)."""
        self.finishing = True
        self.save(owner)

    @staticmethod
    def read_state(out: str | Path) -> dict:
        path = Path(out) / "checkpoint" / "state.json"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"no usable checkpoint at {path}: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path} is not a securegal checkpoint")
        if state.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"{path} is a version-{state.get('version')!r} checkpoint; this securegal resumes "
                              f"version {CHECKPOINT_VERSION} only (it orders the training rows differently): start "
                              "the run again")
        return state

    def load(self) -> dict:
        state = self.read_state(self.dir.parent)
        if state.get("config_sha256") != self.digest:
            raise ConfigError(f"{self.dir} was made with a different federation config; refusing to resume")
        try:
            state["rounds"] = [RoundResult(r["round"], r["weights"], r["eta"], r["train_loss"], tuple(r["absent"]))
                               for r in state["rounds"]]
            state["F"] = [np.load(self.dir / f"F_{t:04d}.npy", allow_pickle=False)
                          for t in range(len(state["rounds"]) + 1)]
            state["alignment"] = {}
            if (self.dir / ALIGNMENT).exists():
                with np.load(self.dir / ALIGNMENT, allow_pickle=False) as arrays:
                    state["alignment"] = {k: arrays[k] for k in arrays.files}
            missing = [key for key in ("session", "epoch", "peers", "weighting", "eta", "finishing") if key not in state]
            if missing:
                raise KeyError(", ".join(missing))
        except (KeyError, TypeError, OSError, ValueError) as exc:
            raise ConfigError(f"{self.dir} is incomplete or damaged ({type(exc).__name__}: {exc}); "
                              "refusing to resume") from None
        return state
