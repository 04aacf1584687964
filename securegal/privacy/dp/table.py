"""What a DP feature party keeps for the table it serves: its ledger and its column map.

A :class:`TablePrivacy` is built once per party (at start-up for ``party serve``, per run for
an embedded federation) and outlives sessions:

- ``ledger``: the table's :class:`~securegal.privacy.dp.ledger.Ledger` (a locked file for a
  networked party, in memory by default for embedded runs). Every session reserves its whole
  plan in it before anything is released; a restart or a new session never resets it. A
  session that ends having released less (refused at setup elsewhere, stopped early) is settled:
  what it did not release is given back (:meth:`TablePrivacy.end_session`).
- ``columns``: a :class:`ColumnSpec`, the per-column map standardization uses instead of the
  exact training mean and std (docs/privacy.md section 6): declared centres/scales or bounds
  (free), or DP estimates of centre and scale from declared bounds paid once from the ledger.
- ``session_epsilon``: each session raises the lifetime epsilon by at most this (None: all that is
  left). Under composition a session's releases alone can read higher than what they add.
- row roles, kept with the ledger: which table rows any session has *trained* on (the guarantee
  covers those no predict reply disclosed, for the table's life) and which were *disclosed* by predict replies
  (exact model outputs: outside the guarantee; under the default policy a row is disclosed by one
  session at most). A row trained on in any session is never
  predicted afterwards, in any session, so a label owner cannot train on some rows and read the
  others' outputs in one session, then swap (docs/privacy.md section 6).
"""
from __future__ import annotations

import base64
import logging
import math
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, PolicyRefused
from .ledger import Ledger
from .mechanisms import GaussianNoise
from .standardize import ColumnBounds, Standardizer, declared_standardizer, dp_standardizer

log = logging.getLogger(__name__)


def _floats(name: str, values) -> tuple[float, ...] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ConfigError(f"{name} must be a list of numbers (one per column), got {values!r}")
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a list of numbers (one per column), got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{name} must be a non-empty list of finite numbers, got {list(values)!r}")
    return out


@dataclass(frozen=True)
class ColumnSpec:
    """Public per-column knowledge of a table (``lower``/``upper`` bounds and/or ``centre``/
    ``scale``), and ``dp_epsilon``: estimate centre and scale privately from the bounds,
    raising the table's lifetime epsilon by at most this much (once; later sessions reuse the
    stored map). ``source`` says where the numbers come from, for the report."""

    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    centre: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    dp_epsilon: float | None = None
    source: str = "declared in party.toml"

    def __post_init__(self) -> None:
        for name in ("lower", "upper", "centre", "scale"):
            object.__setattr__(self, name, _floats(name, getattr(self, name)))
        lengths = {len(v) for v in (self.lower, self.upper, self.centre, self.scale) if v is not None}
        if len(lengths) > 1:
            raise ConfigError(f"column lists must have one value per column; got lengths {sorted(lengths)}")
        if self.dp_epsilon is not None:
            if isinstance(self.dp_epsilon, bool) or not isinstance(self.dp_epsilon, (int, float)) \
                    or not (math.isfinite(self.dp_epsilon) and self.dp_epsilon > 0):
                raise ConfigError(f"columns dp_epsilon must be a finite number > 0, got {self.dp_epsilon!r}")
            if self.lower is None:
                raise ConfigError("columns dp_epsilon estimates centre and scale from declared bounds: "
                                  "give lower and upper")
            if self.centre is not None:
                raise ConfigError("columns: give centre/scale or dp_epsilon, not both")
        self.declared()  # refuse an incomplete or inconsistent declaration now

    @property
    def d(self) -> int:
        return len(next(v for v in (self.lower, self.centre) if v is not None))

    def declared(self) -> Standardizer:
        """The declared map (with dp_epsilon: the bounds' mid-range map, used only for checks)."""
        return declared_standardizer(self.lower, self.upper, None if self.dp_epsilon else self.centre,
                                     None if self.dp_epsilon else self.scale)

    def select(self, columns) -> "ColumnSpec":
        """The spec of the columns ``columns`` (indices into this spec's columns)."""
        idx = [int(j) for j in columns]
        if any(not 0 <= j < self.d for j in idx):
            raise ConfigError(f"column indices {idx} out of range for {self.d} declared columns")

        def pick(v):
            return None if v is None else tuple(v[j] for j in idx)
        return ColumnSpec(pick(self.lower), pick(self.upper), pick(self.centre), pick(self.scale),
                          self.dp_epsilon, self.source)

    def describe(self) -> str:
        kind = "DP estimate of centre/scale from declared bounds" if self.dp_epsilon else \
            "declared centre/scale" if self.centre is not None else "declared bounds (mid-range/half-width)"
        return f"{kind}, {self.source}; not the training mean/std"


def row_mask(stored: dict | None, n_rows: int) -> np.ndarray:
    """A row role as the ledger stores it (output ``rows_trained`` / ``rows_disclosed``: the
    table's row count and a base64 bitmap; None: no row in it) as a boolean mask of n_rows."""
    if stored is None:
        return np.zeros(n_rows, dtype=bool)
    if stored.get("rows") != n_rows:
        raise ConfigError(f"the ledger's row roles are for {stored.get('rows')} rows, the table has {n_rows}")
    bits = np.frombuffer(base64.b64decode(stored["bitmap"], validate=True), dtype=np.uint8)
    return np.unpackbits(bits, count=n_rows).astype(bool)


class TablePrivacy:
    """A DP party's ledger, column map and per-session cap (see the module docstring)."""

    def __init__(self, ledger: Ledger, columns: ColumnSpec, session_epsilon: float | None = None,
                 noise: GaussianNoise | None = None):
        if not isinstance(ledger, Ledger):
            raise TypeError(f"ledger must be a Ledger, got {type(ledger).__name__}")
        if not isinstance(columns, ColumnSpec):
            raise TypeError(f"columns must be a ColumnSpec, got {type(columns).__name__}")
        if session_epsilon is not None and (isinstance(session_epsilon, bool)
                                            or not isinstance(session_epsilon, (int, float))
                                            or not (math.isfinite(session_epsilon) and session_epsilon > 0)):
            raise ConfigError(f"session_epsilon must be a finite number > 0, got {session_epsilon!r}")
        self.ledger, self.columns, self.session_epsilon = ledger, columns, session_epsilon
        self.noise = noise or GaussianNoise()
        # (the session's key, rows it disclosed): rows it may predict again within the session
        self._disclosing: tuple[str | None, np.ndarray | None] = (None, None)

    def standardizer(self, X_train: np.ndarray, session: str) -> Standardizer:
        """The session's column map; a DP estimate is paid from the ledger the first time only."""
        X = np.asarray(X_train, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.columns.d:
            raise ConfigError(f"the table has {X.shape[1] if X.ndim == 2 else '?'} columns, "
                              f"its column declaration {self.columns.d}")
        if self.columns.dp_epsilon is None:
            return self.columns.declared()
        bounds = ColumnBounds(self.columns.lower, self.columns.upper)
        return dp_standardizer(self.ledger, X, bounds, session, self.columns.dp_epsilon, self.noise)

    def _rows(self, role: str, n_rows: int) -> np.ndarray:
        """The table's rows in ``role`` ("trained" or "disclosed"), as a boolean mask of n_rows."""
        return row_mask(self.ledger.output(f"rows_{role}"), n_rows)

    def _mark(self, role: str, rows: np.ndarray, n_rows: int) -> None:
        mask = self._rows(role, n_rows)
        if mask[rows].all():
            return
        mask[rows] = True
        self.ledger.store_output(f"rows_{role}", {"rows": int(n_rows), "count": int(mask.sum()),
                                                  "bitmap": base64.b64encode(np.packbits(mask).tobytes()).decode()})

    def record_training(self, rows: np.ndarray, n_rows: int) -> None:
        """Table rows ``rows`` are a session's training rows: under the guarantee for good."""
        self._mark("trained", np.asarray(rows, dtype=np.int64), n_rows)

    def record_disclosure(self, rows: np.ndarray, n_rows: int, key: str, again: bool = False) -> None:
        """Before a predict reply on table rows ``rows`` in the session the party knows by ``key``
        (its own, not the label owner's session id): refuse (PolicyRefused) if any session of this
        table ever trained on one of them, or (unless ``again``) if an earlier session disclosed
        one of them; else record them as disclosed."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._disclosing[0] != key:
            self._disclosing = (key, np.zeros(n_rows, dtype=bool))
        now = self._disclosing[1]
        self.check_disclosable(rows, n_rows, again, now)
        self._mark("disclosed", rows, n_rows)
        now[rows] = True

    def check_disclosable(self, rows: np.ndarray, n_rows: int, again: bool = False,
                          this_session: np.ndarray | None = None) -> None:
        """Refuse (PolicyRefused) predictions for table rows ``rows`` if a session of this table
        trained on one of them, or (unless ``again``) an earlier session disclosed one of them
        (``this_session``: the rows the asking session disclosed itself). Records nothing."""
        rows = np.asarray(rows, dtype=np.int64)
        trained = int(self._rows("trained", n_rows)[rows].sum())
        if trained:
            raise PolicyRefused(f"{trained} of the {len(rows)} requested rows were training rows of a session of this "
                                "table; the DP guarantee covers them for the table's life, so their model outputs "
                                "are never released (docs/privacy.md section 6)")
        if not again:
            disclosed = self._rows("disclosed", n_rows)[rows]
            earlier = int(np.count_nonzero(disclosed if this_session is None else disclosed & ~this_session[rows]))
            if earlier:
                raise PolicyRefused(f"{earlier} of the {len(rows)} requested rows were disclosed by an earlier "
                                    "session's predictions; each session's round models would add projections of "
                                    "them (policy predict = 'once'; 'non-training' answers them again)")

    def row_roles(self, n_rows: int) -> dict[str, int]:
        """How many table rows were trained on and how many disclosed by predictions (a row can be
        both: the guarantee covers trained rows never disclosed)."""
        return {role: int(self._rows(role, n_rows).sum()) for role in ("trained", "disclosed")}

    def sessions(self) -> int:
        """Sessions this table has served (kept with the ledger, so it survives restarts)."""
        return int(self.ledger.output("sessions") or 0)

    def count_session(self) -> None:
        self.ledger.store_output("sessions", self.sessions() + 1)

    def end_session(self, session: str, trainer, reason: str) -> None:
        """Settle ``session``'s reservation by what its ``trainer`` actually released (its
        in-session accountant; nothing if it has none yet): a session that stopped early gives
        back what it did not use (:meth:`Ledger.settle`). DP standardization is not part of the
        reservation: it stays paid, as later sessions reuse it."""
        accountant = getattr(trainer, "accountant", None)
        released = accountant.releases if accountant is not None else ()
        returned = self.ledger.settle(session, released, reason)
        if returned:
            log.info("session %s %s: %d release(s) made, epsilon %.4g of its reservation returned to the table "
                     "(lifetime spent %.4g of %g)", session, reason, len(released), returned,
                     self.ledger.epsilon_spent, self.ledger.budget.epsilon)

    def close(self) -> None:
        self.ledger.close()


def open_table(table_id: str, budget, accountant: str, columns: ColumnSpec, *, ledger_path=None,
               session_epsilon: float | None = None, seed: int | None = None,
               n_rows: int | None = None, formerly=()) -> TablePrivacy:
    """A party's :class:`TablePrivacy`: the ledger file at ``ledger_path`` opened and locked (a
    networked party, or ``securegal train --ledger``), else an in-memory ledger for one run.
    ``formerly``: the table's earlier fingerprints (:func:`~securegal.privacy.dp.ledger.table_identity`)."""
    from .ledger import open_ledger

    if n_rows is not None:
        budget.check_rows(n_rows)  # delta < 1/n for the table's rows, in memory or on file
    if ledger_path is not None:
        ledger = open_ledger(ledger_path, table_id, budget, accountant, n_rows=n_rows, formerly=formerly)
    else:
        ledger = Ledger(table_id, budget, accountant)
    try:
        return TablePrivacy(ledger, columns, session_epsilon, GaussianNoise(seed + 1) if seed is not None else None)
    except BaseException:
        ledger.close()
        raise
