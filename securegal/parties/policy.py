"""A feature party's own policy: what this organization is willing to do for a label owner.

Checked before any work, refusing with :class:`~securegal.errors.PolicyRefused` (``ErrorReply``
code ``policy``). Defaults are safe: at least :data:`MIN_ROWS` training rows per session,
predictions only for rows outside every session's training set and each by one session at most
(``predict = "once"``), every residual mode and learner
(the party's own ``[privacy]`` and ``[learner]`` still decide which ones it runs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ConfigError, PolicyRefused
from ..messages import PREDICT_MODES, RESIDUAL_MODES

MIN_ROWS = 20
# Seconds after which a networked party expires an idle, unfinished session.
SESSION_TIMEOUT = 3600.0
# Most IDs a label owner may match against the table in one session (its PSI request's points).
MAX_PSI_IDS = 1 << 24


@dataclass(frozen=True)
class PartyPolicy:
    """``min_rows`` per session, ``max_sessions`` over the table's life (None: no cap; a session
    counts from its private set intersection, or its setup without one; DP parties count them in
    the ledger, others per process), ``max_psi_ids`` per intersection, accepted ``residuals``
    modes and ``learners`` (None: any), and ``predict`` (one of :data:`PREDICT_MODES`)."""

    min_rows: int = MIN_ROWS
    max_sessions: int | None = None
    max_psi_ids: int = MAX_PSI_IDS
    residuals: tuple[str, ...] = RESIDUAL_MODES
    learners: tuple[str, ...] | None = None
    predict: str = "once"

    def __post_init__(self) -> None:
        if isinstance(self.min_rows, bool) or not isinstance(self.min_rows, int) or self.min_rows < 2:
            raise ConfigError(f"policy min_rows must be an integer >= 2, got {self.min_rows!r}")
        if self.max_sessions is not None and (isinstance(self.max_sessions, bool)
                                              or not isinstance(self.max_sessions, int) or self.max_sessions < 1):
            raise ConfigError(f"policy max_sessions must be an integer >= 1, got {self.max_sessions!r}")
        if isinstance(self.max_psi_ids, bool) or not isinstance(self.max_psi_ids, int) or self.max_psi_ids < 1:
            raise ConfigError(f"policy max_psi_ids must be an integer >= 1, got {self.max_psi_ids!r}")
        unknown = set(self.residuals) - set(RESIDUAL_MODES)
        if unknown or not self.residuals:
            raise ConfigError(f"policy residuals must be a non-empty subset of {list(RESIDUAL_MODES)}, "
                              f"got {list(self.residuals)}")
        if self.predict not in PREDICT_MODES:
            raise ConfigError(f"policy predict must be one of {', '.join(PREDICT_MODES)}, got {self.predict!r}")

    def check_learner(self, learner: str) -> None:
        """At start-up: the party's own learner must be one its policy accepts."""
        if self.learners is not None and learner not in self.learners:
            raise ConfigError(f"learner {learner!r} is not among the policy's learners {list(self.learners)}")

    def check_setup(self, n_rows: int, residuals: str, sessions_so_far: int) -> None:
        """``sessions_so_far``: the sessions served before this one."""
        if n_rows < self.min_rows:
            raise PolicyRefused(f"a session needs at least {self.min_rows} training rows (policy min_rows), "
                                f"asked for {n_rows}")
        if residuals not in self.residuals:
            raise PolicyRefused(f"residuals {residuals!r} are not accepted by this party's policy "
                                f"({', '.join(self.residuals)})")
        self._check_sessions(sessions_so_far)

    def check_alignment(self, n_ids: int, sessions_so_far: int) -> None:
        """A private set intersection opens a session: it counts toward ``max_sessions`` (each one
        tells the label owner which of its IDs this table holds) and matches at most ``max_psi_ids``."""
        if n_ids > self.max_psi_ids:
            raise PolicyRefused(f"the label owner asks to match {n_ids} IDs, this party's policy max_psi_ids is "
                                f"{self.max_psi_ids}")
        self._check_sessions(sessions_so_far)

    def check_selection(self, n_rows: int) -> None:
        """The rows selected after an intersection hold every training row: fewer than ``min_rows``
        cannot make a session."""
        if n_rows < self.min_rows:
            raise PolicyRefused(f"the label owner selected {n_rows} rows, fewer than the {self.min_rows} training "
                                "rows a session needs (policy min_rows)")

    def _check_sessions(self, sessions_so_far: int) -> None:
        if self.max_sessions is not None and sessions_so_far >= self.max_sessions:
            raise PolicyRefused(f"this table has served {sessions_so_far} sessions, the policy's max_sessions is "
                                f"{self.max_sessions}")

    def check_predict(self, sample_ids: np.ndarray, is_training: Callable[[np.ndarray], np.ndarray]) -> None:
        """``is_training(sample_ids)``: a bool per requested row, True for a training row of this
        session (asked only when the policy answers predict requests at all)."""
        if self.predict == "none":
            raise PolicyRefused("this party's policy answers no predict requests (predict = 'none')")
        overlap = int(np.count_nonzero(is_training(np.asarray(sample_ids))))
        if overlap:
            raise PolicyRefused(f"{overlap} of the {len(sample_ids)} requested rows are training rows of this "
                                "session; their predictions would leave the party outside the privacy "
                                f"accounting (policy predict = {self.predict!r})")
