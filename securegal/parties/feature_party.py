"""A feature party: its own feature block keyed by sample ID, a trainer, and a strict state machine.

It answers the label owner's messages (setup, one fit per round, predictions, finish) and
rejects anything out of order, from another session or sender, or of the wrong shape.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable

import numpy as np

from ..data.parquet_table import ParquetTable
from ..data.tables import FeatureTable
from ..errors import ConfigError, LayerMismatch, ProtocolError, reply_code
from ..core.memory import keep_large_blocks
from ..core.zscore import ZScore
from .. import messages as m
from ..seam import RoundTrainer, TrainerFactory
from ..wire.codec import DEFAULT_LIMITS
from .policy import PartyPolicy

# Makes a party's PSI responder for one session (securegal.align.FeaturePartyPsi over its IDs).
Aligner = Callable[[str], object]

log = logging.getLogger(__name__)

# A label owner's seq is (epoch << RESUME_BITS) + counter; the epoch counts restarts from a checkpoint.
RESUME_BITS = 32
# Setup option of hidden membership (docs/alignment.md): the session trains on all of this party's
# rows and the party is never told which of them the label owner holds.
MEMBERSHIP_OPTION = "membership"
HIDDEN = "hidden"
# Largest residual magnitude a party accepts in plaintext: GAL's residuals are O(1) (the label
# owner scales its targets); far larger finite values would overflow a learner's sums.
MAX_RESIDUAL = 1e12
# A session's round models (rounds x outputs x (columns + 1) coefficients, the least any learner
# keeps) may take at most this many times the party's max_message_bytes, checked at setup.
MODEL_BYTES_PER_MESSAGE_BYTE = 4


class FeatureParty:
    """Holds one organization's columns; never sees labels, only what the label owner sends.

    ``policy`` (:class:`~securegal.parties.policy.PartyPolicy`) is checked before any work.
    ``privacy`` (a DP party's :class:`~securegal.privacy.dp.table.TablePrivacy`): the table's
    ledger, in which every session reserves its whole plan before anything is released, and the
    column map that replaces the exact training mean/std. ``max_reply_bytes``: a predict request
    whose reply would be larger is refused before any work.

    ``table`` is a :class:`~securegal.data.tables.FeatureTable` in memory, or a
    :class:`~securegal.data.parquet_table.ParquetTable` served out of core: then the training rows
    are read in batches at setup and every round (plain residuals, linear l2 learner, no
    feature-DP: anything else is refused) and never held as a whole.
    """

    def __init__(self, name: str, table: FeatureTable | ParquetTable, trainer_factory: TrainerFactory, label_owner: str | None = None,
                 session_timeout: float | None = None, aligner: Aligner | None = None, ids=None,
                 policy: PartyPolicy | None = None, privacy=None,
                 max_reply_bytes: int = DEFAULT_LIMITS.max_message_bytes):
        self.name = name
        # With an ``aligner`` (a party across the wire) every session starts with private set
        # intersection: rows are then named by this session's random handles, never by IDs, and
        # a Setup or PredictRequest may name only the rows the label owner selected.
        self.aligner = aligner
        # The rows' own IDs, in table order (a streamed table without an ID column makes its row
        # numbers only when asked: a PSI session or a DP record).
        lazy = ids is None and isinstance(table, ParquetTable)
        self._ids = None if lazy else np.asarray(table.ids if ids is None else ids)
        self._psi = None
        self._session_table: FeatureTable | None = None
        self._selected: np.ndarray | None = None
        self.policy = policy if policy is not None else PartyPolicy()
        self.privacy = privacy
        self.max_reply_bytes = max_reply_bytes
        self.streamed = isinstance(table, ParquetTable)
        if self.streamed and privacy is not None:
            raise ConfigError(f"party {name!r} streams its table, which feature-DP does not support; serve it in "
                              f"memory (stream = false) or drop the DP budget")
        self._sessions = 0  # sessions served by this process (DP parties count in the ledger)
        self._counted: str | None = None  # the session its private set intersection already counted
        # This session's training rows as a mask over the table's rows (1 byte a row, where their
        # IDs took 8 a training row): a predict request for any of them is refused (the policy).
        self._training = np.zeros(0, dtype=bool)
        # An open session idle for longer than this (seconds) expires when a new Setup arrives, so
        # a label owner that vanished without Finish cannot wedge the party.
        self.session_timeout = session_timeout
        self._last_activity = time.monotonic()
        self.table = table
        self.trainer_factory = trainer_factory
        self.label_owner = label_owner
        self.session: str | None = None
        self._disclosure_key = ""  # set at each setup (record_disclosure)
        self.trainer: RoundTrainer | None = None
        self.last_round = 0
        self.last_seq = -1
        self.finished = False
        self._n_train = 0
        self._k = 0
        self._rounds = 0
        self._scaler = None  # the session's column map: X -> standardized X
        # The last round's reply, for a label owner that restarts: a trainer that can recompute its
        # train predictions (``train_predictions``: the plain layer's, the same bits and no new
        # release) is asked again instead of holding n x K values; any other reply (DP noise,
        # ciphertexts) is kept, so asking again never releases anything new.
        self._last_fit: m.FitReply | Callable[[], m.FitReply] | None = None

    @property
    def ids(self) -> np.ndarray:
        return self.table.ids if self._ids is None else self._ids

    def _check_envelope(self, env: m.Envelope) -> None:
        if env.receiver != self.name:
            raise ProtocolError(f"message for {env.receiver!r} reached party {self.name!r}")
        if self.label_owner is not None and env.sender != self.label_owner:
            raise ProtocolError(f"message from {env.sender!r}, expected the label owner {self.label_owner!r}")
        if isinstance(env.body, m.Setup) and self.aligner is not None:
            if self._selected is None or env.session != self.session or self.trainer is not None:
                raise ProtocolError("this party aligns rows first: send psi_request and psi_selection in this "
                                    "session before setup")
            return
        if isinstance(env.body, m.PsiRequest if self.aligner is not None else m.Setup):
            if self.session is not None and not self.finished:
                idle = time.monotonic() - self._last_activity
                if self.session_timeout is None or idle <= self.session_timeout:
                    left = "" if self.session_timeout is None else \
                        f", or in {max(0, int(self.session_timeout - idle))} s, when it has been idle for its timeout"
                    raise ProtocolError(f"session {self.session!r} is still open; refusing a new {env.kind} (a run "
                                        f"stopped after it started can be resumed with --resume; a new one, once "
                                        f"that session finishes{left})")
                log.warning("session %s expired after %.0f s idle; starting a new one", self.session, idle)
            return
        if self.session is None or (self.trainer is None and isinstance(env.body, (m.FitRequest, m.PredictRequest))):
            raise ProtocolError(f"{env.kind} before setup")
        if env.session != self.session:
            raise ProtocolError(f"message from session {env.session!r}, this party is in session {self.session!r}")
        if env.seq <= self.last_seq:
            raise ProtocolError(f"replayed or reordered message: seq {env.seq} after {self.last_seq}")
        if self.finished:
            raise ProtocolError(f"session {self.session!r} is finished")

    def handle(self, env: m.Envelope) -> m.Body:
        """Answer one validated request; protocol violations raise :class:`ProtocolError`."""
        self._check_envelope(env)
        body = env.body
        try:
            reply = self._answer(env, body)
        except Exception:
            if isinstance(body, (m.PsiRequest, m.PsiSelection, m.Setup)) and self.session == env.session:
                self.finished = True  # a refused start ends the session: the party is free for the next
            raise
        self.last_seq = env.seq
        self._last_activity = time.monotonic()
        return reply

    def _answer(self, env: m.Envelope, body: m.Body) -> m.Body:
        if isinstance(body, m.PsiRequest) and self.aligner is not None:
            reply = self._psi_request(env, body)
        elif isinstance(body, m.PsiSelection) and self._psi is not None:
            reply = self._psi_selection(body)
        elif isinstance(body, m.Setup):
            reply = self._setup(env, body)
        elif isinstance(body, m.FitRequest):
            reply = self._fit(env, body)
        elif isinstance(body, m.PredictRequest):
            reply = self._predict(body)
        elif isinstance(body, m.Finish):
            self.finished = True
            self._end_session("finished")
            reply = m.FinishAck(info={"rounds": str(self.last_round)})
            log.info("session %s finished after %d rounds", self.session, self.last_round)
        else:
            raise ProtocolError(f"a feature party does not accept {env.kind} messages")
        return reply

    def _setup(self, env: m.Envelope, setup: m.Setup) -> m.SetupAck:
        if setup.n_outputs < 1 or setup.rounds < 1:
            raise ProtocolError(f"setup needs n_outputs >= 1 and rounds >= 1, got {setup.n_outputs}, {setup.rounds}")
        if len(setup.train_ids) < 2:
            raise ProtocolError("train_ids must hold at least 2 distinct sample IDs")
        models = int(setup.rounds) * int(setup.n_outputs) * (self.table.n_features + 1) * 8
        if models > MODEL_BYTES_PER_MESSAGE_BYTE * self.max_reply_bytes:  # every round's model is kept
            raise ProtocolError(f"setup for {setup.rounds} rounds of {setup.n_outputs} outputs: the round models "
                                f"alone would take {models} bytes, over this party's bound "
                                f"{MODEL_BYTES_PER_MESSAGE_BYTE} x max_message_bytes = "
                                f"{MODEL_BYTES_PER_MESSAGE_BYTE * self.max_reply_bytes}")
        repeated = len(setup.train_ids) - len(np.unique(setup.train_ids))
        if repeated:  # a row counted m times would move every release by m times its sensitivity
            raise ProtocolError(f"train_ids name {repeated} of their {len(setup.train_ids)} rows more than once; "
                                "every training row is named once")
        self._check_selected(setup.train_ids, "setup")
        hidden = self._hidden_membership(setup)
        # A plain in-memory party builds its standardized rows straight from its table (below);
        # a DP party's column map needs the raw rows.
        built = not self.streamed and self.privacy is None
        X_raw = None if built else self._selection(setup.train_ids) if self.streamed else self._rows(setup.train_ids)
        source = self._source()
        positions = source.positions(setup.train_ids) if built else None
        counted = self._counted == env.session  # its intersection counted it already
        self.policy.check_setup(len(setup.train_ids), setup.residuals, self._served() - counted)
        # A new setup ends the previous (finished or expired) session, also when it is refused.
        self._end_session("expired")
        self.session, self.trainer, self._scaler = None, None, None
        trainer = self.trainer_factory(setup)
        if self.streamed:  # only a trainer that can stream says how (the plain layer's, for ridge)
            to_streamed = getattr(trainer, "streamed", None)
            if to_streamed is None:
                raise LayerMismatch(f"party {self.name!r} streams its table: it runs only plain residuals (or "
                                    f"label-DP) with the linear learner, not {type(trainer).__name__}")
            trainer = to_streamed(self.name)
        if hidden and not getattr(trainer, "hides_membership", False):
            raise LayerMismatch(f"party {self.name!r} cannot serve hidden membership: the label owner would get "
                                f"predictions on all its rows, which only a feature-DP trainer with feedback on "
                                f"CKKS residuals releases ({type(trainer).__name__} does not)")
        if self.privacy is not None:
            if not hasattr(trainer, "bind_table"):
                raise ConfigError(f"party {self.name!r} has a privacy ledger but its trainer "
                                  f"{type(trainer).__name__} releases outside it")
            trainer.bind_table(self.privacy, env.session)
        check = getattr(trainer, "check_setup", None)
        if check is not None:
            check(setup)
        # Only a setup this party can serve pays for a DP column map (docs/privacy.md section 6).
        if self.streamed:  # the streamed trainer z-scores each batch with the training rows' statistics
            scaler = lambda rows: rows  # noqa: E731
        elif self.privacy is None:  # no DP: z-score with the training rows' statistics
            scaler = ZScore.fit(source.X, positions)  # standardizes the fresh row copies in place
        else:  # DP: a map that is public or paid from the ledger (docs/privacy.md section 6)
            scaler = self.privacy.standardizer(X_raw, env.session)
        if built:  # in the dtype the trainer keeps them in (float32 for a large ridge block): no float64 copy
            dtype = getattr(trainer, "feature_dtype", lambda shape: np.float64)((len(positions), source.n_features))
            X_train = scaler.rows(source.X, positions, dtype)
        else:
            X_train = scaler(X_raw)
        try:
            trainer.setup(X_train, setup)  # a DP trainer reserves its whole plan in the ledger here
            if self.privacy is not None:
                self.privacy.record_training(self._table_rows(setup.train_ids), len(self.ids))
            if not counted:
                self._count_session(env.session)
        except BaseException:
            if self.privacy is not None:  # whatever was reserved is given back: nothing was released
                self.privacy.end_session(env.session, trainer, "refused at setup")
            raise
        self.trainer, self._scaler = trainer, scaler
        self.session, self.finished = env.session, False
        self._disclosure_key = os.urandom(16).hex()  # ours: the session id is the label owner's to choose
        self.last_round, self.last_seq, self._last_fit = 0, -1, None
        self._n_train, self._k, self._rounds = len(setup.train_ids), setup.n_outputs, int(setup.rounds)
        self._training = np.zeros(self.table.n_rows if self.streamed else len(self.table.ids), dtype=bool)
        self._training[self._table_rows(setup.train_ids)] = True
        log.info("session %s started by %s: %d training rows, %d rounds, %s residuals", env.session, env.sender,
                 self._n_train, setup.rounds, setup.residuals)
        # how many columns this party contributes is public (docs/alignment.md); their names are not
        return m.SetupAck(info={"party": self.name, "columns": str(self.table.n_features)})

    def _hidden_membership(self, setup: m.Setup) -> bool:
        """Whether ``setup`` asks for hidden membership; if so it must name every row of this
        party (a subset would reveal membership after all)."""
        mode = dict(setup.options or {}).get(MEMBERSHIP_OPTION)
        if mode is None:
            return False
        if mode != HIDDEN:
            raise ProtocolError(f"setup option {MEMBERSHIP_OPTION!r} must be {HIDDEN!r}, got {mode!r}")
        if self._psi is None:
            raise ProtocolError("hidden membership needs this session's private set intersection first")
        everyone = np.sort(self._psi.row_handles)
        if not np.array_equal(np.sort(np.asarray(setup.train_ids, dtype=np.int64)), everyone):
            raise ProtocolError(f"hidden membership: the setup must name all {len(everyone)} of this party's rows, "
                                f"it names {len(setup.train_ids)}")
        return True

    def _source(self) -> FeatureTable:
        """The in-memory table rows are named in: this session's handles after PSI, else the IDs."""
        return self._session_table or self.table

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        return self._source().rows(ids)

    def _selection(self, ids: np.ndarray):
        """The rows ``ids`` names (handles after PSI), in that order, as a streamed table's
        :class:`~securegal.data.parquet_table.RowSelection` (repeated rows are refused)."""
        return self.table.select(self._table_rows(ids))

    def _table_rows(self, ids: np.ndarray) -> np.ndarray:
        """Positions in this party's own table of the rows ``ids`` names (handles after PSI)."""
        return self._psi.rows_of(ids) if self._psi is not None else self.table.positions(ids)

    def _check_selected(self, ids: np.ndarray, what: str) -> None:
        if self._selected is not None and not np.isin(ids, self._selected).all():
            raise ProtocolError(f"{what} names rows the label owner did not select in this session")

    def _psi_request(self, env: m.Envelope, req: m.PsiRequest) -> m.PsiReply:
        """Open a session with private set intersection: answer with this party's blinded IDs
        under fresh per-session handles (what crosses the wire afterwards)."""
        if req.session != env.session:
            raise ProtocolError(f"PSI request for session {req.session!r} inside session {env.session!r}")
        self.policy.check_alignment(req.count, self._served())
        psi = self.aligner(env.session)
        reply = psi.respond(req)
        self._end_session("expired")
        self._count_session(env.session)  # the reply tells the label owner which of its IDs we hold
        self._psi, self._selected, self.trainer = psi, None, None
        if not self.streamed:  # a streamed table maps handles to its rows through the PSI (_table_rows)
            self._session_table = FeatureTable(psi.row_handles, self.table.X, self.table.patch_shape)
        self.session, self.finished = env.session, False
        self.last_round, self.last_seq, self._last_fit = 0, -1, None
        self._n_train, self._k, self._rounds = 0, 0, 0  # what the last session's setup fixed
        log.info("session %s: private set intersection with %s (%d of its rows against %d of ours)",
                 env.session, env.sender, req.count, len(self.ids))
        return reply

    def _psi_selection(self, selection: m.PsiSelection) -> m.PsiSelectionAck:
        """The rows the label owner will use in this session (training, validation and test)."""
        if self._selected is not None:
            raise ProtocolError("this session's rows were already selected")
        self.policy.check_selection(len(selection.handles))
        self._psi.select(selection)  # refuses unknown handles or fewer rows than this party's minimum
        self._selected = np.sort(np.asarray(selection.handles, dtype=np.int64))
        log.info("session %s: %d of our rows are used", self.session, len(self._selected))
        return m.PsiSelectionAck(len(self._selected))

    def _served(self) -> int:
        """Sessions this table has served: the ledger's count for a DP party (it outlives restarts),
        this process's otherwise."""
        return self.privacy.sessions() if self.privacy is not None else self._sessions

    def _count_session(self, session: str) -> None:
        if self.privacy is not None:
            self.privacy.count_session()
        self._sessions += 1
        self._counted = session

    def alignment(self) -> tuple[np.ndarray, np.ndarray]:
        """This session's selected row handles and this party's own IDs of those rows."""
        if self._selected is None:
            raise ProtocolError("no rows were selected in this session")
        rows = self._psi.rows_of(self._selected)
        return self._selected, self.ids[rows]

    def _features(self, ids: np.ndarray):
        if self.streamed:
            return self._selection(ids)
        return self._scaler(self._rows(ids))

    def _fit(self, env: m.Envelope, req: m.FitRequest) -> m.FitReply:
        if env.round == self.last_round and self._last_fit is not None and env.seq >> RESUME_BITS > self.last_seq >> RESUME_BITS:
            # The label owner restarted from its checkpoint (its seq moved to a new epoch) and asks
            # again for the round it lost: it gets the same release, never a second fit (no second
            # privacy spend). Within one epoch a repeated round is still refused.
            log.info("round %d asked again by %s: answering with the kept reply", env.round, env.sender)
            return self._last_fit() if callable(self._last_fit) else self._last_fit
        if env.round <= self.last_round:
            raise ProtocolError(f"fit request for round {env.round}, but round {self.last_round} is already done")
        if env.round > self._rounds:  # every round's model is kept: their number was fixed at setup
            raise ProtocolError(f"fit request for round {env.round}, but this session was set up for {self._rounds}")
        if isinstance(req.residuals, np.ndarray):
            largest = float(max(req.residuals.max(initial=0.0), -req.residuals.min(initial=0.0)))
            if largest > MAX_RESIDUAL:
                raise ProtocolError(f"residuals up to {largest:.3g} in magnitude; this party accepts at most "
                                    f"{MAX_RESIDUAL:g}")
            keep_large_blocks(req.residuals.nbytes)  # the round's residuals, predictions and wire copies (core.memory)
        preds = self.trainer.fit_round(env.round, req.residuals)
        self.last_round = env.round
        if hasattr(self.trainer, "train_predictions"):  # it recomputes them: n x K values not kept
            trainer, fitted = self.trainer, env.round
            self._last_fit = lambda: m.FitReply(predictions=trainer.train_predictions(fitted))
            return m.FitReply(predictions=preds)
        self._last_fit = m.FitReply(predictions=preds)
        return self._last_fit

    def _predict(self, req: m.PredictRequest) -> m.PredictReply:
        """Predictions of the fitted round models for rows outside the training set: checked
        (rounds fitted, selected rows, policy, reply size, and for a DP party every earlier
        session's training rows) before any work."""
        self._check_selected(req.sample_ids, "predict request")
        if req.rounds < 1 or req.rounds > self.last_round:
            raise ProtocolError(f"predict request for {req.rounds} rounds; this session fitted {self.last_round}")
        self.policy.check_predict(req.sample_ids, lambda ids: self._training[self._table_rows(ids)])
        size = self.reply_bytes(len(req.sample_ids), req.rounds)
        if size > self.max_reply_bytes:
            raise ProtocolError(f"predict reply for {len(req.sample_ids)} rows x {req.rounds} rounds would be "
                                f"{size} bytes, over this party's max_message_bytes {self.max_reply_bytes}")
        if self.privacy is not None:  # never a row any session trained on; the others are recorded as disclosed
            # rows this session disclosed may be asked again within it, under a key of our own: a
            # label owner reusing a session id must not pass for the session it names
            self.privacy.record_disclosure(self._table_rows(req.sample_ids), len(self.ids), self._disclosure_key,
                                           again=self.policy.predict == "non-training")
        return m.PredictReply(self.trainer.predict(self._features(req.sample_ids), req.rounds))

    def check_predictable(self, ids) -> None:
        """Before a run: refuse (PolicyRefused) predictions this party would refuse in any session,
        for the rows among ``ids`` (its own IDs; others are left out) that an earlier session of
        its table trained on or, under ``predict = "once"``, disclosed. Records nothing."""
        if self.privacy is None or self.streamed or self.policy.predict == "none":
            return
        rows = np.flatnonzero(np.isin(self.ids, ids))
        self.privacy.check_disclosable(rows, len(self.ids), again=self.policy.predict == "non-training")

    def reply_bytes(self, rows: int, rounds: int) -> int:
        """Size of a predict reply, from the request alone: the trainer's own estimate
        (ciphertexts) or rounds x rows x K float64 values."""
        estimate = getattr(self.trainer, "reply_bytes", None)
        return int(estimate(rows, rounds)) if estimate is not None else rounds * rows * self._k * 8

    def _end_session(self, reason: str) -> None:
        """Settle a DP party's open session in its table's ledger: what the session reserved and
        did not release is given back (docs/privacy.md section 3b)."""
        if self.privacy is not None and self.session is not None and self.trainer is not None:
            self.privacy.end_session(self.session, self.trainer, reason)

    def close(self) -> None:
        """Settle an open session and release the table's ledger lock (a DP party)."""
        if self.privacy is not None:
            try:
                self._end_session("party stopped")
            finally:
                self.privacy.close()


def error_reply(exc: BaseException) -> m.ErrorReply:
    """The error a party sends back instead of a result (its code from
    :func:`securegal.errors.reply_code`); internal details stay in the log, and every refusal is
    logged with its reason (never with data or IDs)."""
    code = reply_code(exc)
    if code == "internal":
        log.exception("internal error while handling a request")
        return m.ErrorReply("internal", f"internal error ({type(exc).__name__}); see the party's log")
    log.warning("refused a request (%s): %s", code, exc)
    return m.ErrorReply(code, str(exc))
