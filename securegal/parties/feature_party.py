"""A feature party: its own feature block keyed by sample ID, a trainer, and a strict state machine.

It answers the label owner's messages (setup, one fit per round, predictions, finish) and
rejects anything out of order, from another session or sender, or of the wrong shape.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..data.tables import FeatureTable
from ..errors import ConfigError, ProtocolError, reply_code
from .. import messages as m
from ..seam import RoundTrainer, TrainerFactory
from ..wire.codec import DEFAULT_LIMITS
from .policy import PartyPolicy

log = logging.getLogger(__name__)

# A label owner's seq is (epoch << RESUME_BITS) + counter; the epoch counts restarts from a checkpoint.
RESUME_BITS = 32


class FeatureParty:
    """Holds one organization's columns; never sees labels, only what the label owner sends.

    ``policy`` (:class:`~securegal.parties.policy.PartyPolicy`) is checked before any work.
    ``privacy`` (a DP party's :class:`~securegal.privacy.dp.table.TablePrivacy`): the table's
    ledger, in which every session reserves its whole plan before anything is released, and the
    column map that replaces the exact training mean/std. ``max_reply_bytes``: a predict request
    whose reply would be larger is refused before any work.
    """

    def __init__(self, name: str, table: FeatureTable, trainer_factory: TrainerFactory, label_owner: str | None = None,
                 session_timeout: float | None = None, policy: PartyPolicy | None = None, privacy=None,
                 max_reply_bytes: int = DEFAULT_LIMITS.max_message_bytes):
        self.name = name
        self.policy = policy if policy is not None else PartyPolicy()
        self.privacy = privacy
        self.max_reply_bytes = max_reply_bytes
        self._sessions = 0  # sessions served by this process (DP parties count in the ledger)
        self._train_ids = np.zeros(0, dtype=np.int64)
        # An open session idle for longer than this (seconds) expires when a new Setup arrives, so
        # a label owner that vanished without Finish cannot wedge the party.
        self.session_timeout = session_timeout
        self._last_activity = time.monotonic()
        self.table = table
        self.trainer_factory = trainer_factory
        self.label_owner = label_owner
        self.session: str | None = None
        self.trainer: RoundTrainer | None = None
        self.last_round = 0
        self.last_seq = -1
        self.finished = False
        self._n_train = 0
        self._k = 0
        self._scaler = None  # the session's column map: X -> standardized X
        self._last_fit: m.FitReply | None = None

    def _check_envelope(self, env: m.Envelope) -> None:
        if env.receiver != self.name:
            raise ProtocolError(f"message for {env.receiver!r} reached party {self.name!r}")
        if self.label_owner is not None and env.sender != self.label_owner:
            raise ProtocolError(f"message from {env.sender!r}, expected the label owner {self.label_owner!r}")
        if isinstance(env.body, m.Setup):
            if self.session is not None and not self.finished:
                idle = time.monotonic() - self._last_activity
                if self.session_timeout is None or idle <= self.session_timeout:
                    raise ProtocolError(f"session {self.session!r} is still open; refusing a new setup")
                log.warning("session %s expired after %.0f s idle; starting a new one", self.session, idle)
            return
        if self.session is None:
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
        if isinstance(body, m.Setup):
            reply = self._setup(env, body)
        elif isinstance(body, m.FitRequest):
            reply = self._fit(env, body)
        elif isinstance(body, m.PredictRequest):
            reply = self._predict(body)
        elif isinstance(body, m.Finish):
            self.finished = True
            reply = m.FinishAck(info={"rounds": str(self.last_round)})
            log.info("session %s finished after %d rounds", self.session, self.last_round)
        else:
            raise ProtocolError(f"a feature party does not accept {env.kind} messages")
        self.last_seq = env.seq
        self._last_activity = time.monotonic()
        return reply

    def _setup(self, env: m.Envelope, setup: m.Setup) -> m.SetupAck:
        if setup.n_outputs < 1 or setup.rounds < 1:
            raise ProtocolError(f"setup needs n_outputs >= 1 and rounds >= 1, got {setup.n_outputs}, {setup.rounds}")
        if len(np.unique(setup.train_ids)) != len(setup.train_ids) or len(setup.train_ids) < 2:
            raise ProtocolError("train_ids must hold at least 2 distinct sample IDs")
        X_raw = self.table.rows(setup.train_ids)
        sessions = self.privacy.sessions() if self.privacy is not None else self._sessions
        self.policy.check_setup(len(setup.train_ids), setup.residuals, sessions)
        # A new setup ends the previous (finished or expired) session, also when it is refused.
        self.session, self.trainer, self._scaler = None, None, None
        if self.privacy is None:  # no DP: z-score with the training rows' statistics
            mean, std = X_raw.mean(axis=0), X_raw.std(axis=0)
            std[std == 0] = 1.0
            scaler = lambda X: (X - mean) / std  # noqa: E731
        else:  # DP: a map that is public or paid from the ledger (docs/privacy.md section 6)
            scaler = self.privacy.standardizer(X_raw, env.session)
        trainer = self.trainer_factory(setup)
        if self.privacy is not None:
            if not hasattr(trainer, "bind_table"):
                raise ConfigError(f"party {self.name!r} has a privacy ledger but its trainer "
                                  f"{type(trainer).__name__} releases outside it")
            trainer.bind_table(self.privacy, env.session)
        trainer.setup(scaler(X_raw), setup)  # a DP trainer reserves its whole plan in the ledger here
        if self.privacy is not None:
            self.privacy.count_session()
        self._sessions += 1
        self.trainer, self._scaler = trainer, scaler
        self.session, self.finished = env.session, False
        self.last_round, self.last_seq, self._last_fit = 0, -1, None
        self._n_train, self._k = len(setup.train_ids), setup.n_outputs
        self._train_ids = np.asarray(setup.train_ids)
        log.info("session %s started by %s: %d training rows, %d rounds, %s residuals", env.session, env.sender,
                 self._n_train, setup.rounds, setup.residuals)
        return m.SetupAck(info={"party": self.name})

    def _features(self, ids: np.ndarray) -> np.ndarray:
        return self._scaler(self.table.rows(ids))

    def _fit(self, env: m.Envelope, req: m.FitRequest) -> m.FitReply:
        if env.round == self.last_round and self._last_fit is not None and env.seq >> RESUME_BITS > self.last_seq >> RESUME_BITS:
            # The label owner restarted from its checkpoint (its seq moved to a new epoch) and asks
            # again for the round it lost: it gets the same release, never a second fit (no second
            # privacy spend). Within one epoch a repeated round is still refused.
            log.info("round %d asked again by %s: answering with the kept reply", env.round, env.sender)
            return self._last_fit
        if env.round <= self.last_round:
            raise ProtocolError(f"fit request for round {env.round}, but round {self.last_round} is already done")
        preds = self.trainer.fit_round(env.round, req.residuals)
        self.last_round = env.round
        self._last_fit = m.FitReply(predictions=preds)
        return self._last_fit

    def _predict(self, req: m.PredictRequest) -> m.PredictReply:
        """Predictions of the fitted round models for rows outside the training set: checked
        (rounds fitted, policy, reply size) before any work."""
        if req.rounds < 1 or req.rounds > self.last_round:
            raise ProtocolError(f"predict request for {req.rounds} rounds; this session fitted {self.last_round}")
        self.policy.check_predict(req.sample_ids, self._train_ids)
        size = self.reply_bytes(len(req.sample_ids), req.rounds)
        if size > self.max_reply_bytes:
            raise ProtocolError(f"predict reply for {len(req.sample_ids)} rows x {req.rounds} rounds would be "
                                f"{size} bytes, over this party's max_message_bytes {self.max_reply_bytes}")
        return m.PredictReply(self.trainer.predict(self._features(req.sample_ids), req.rounds))

    def reply_bytes(self, rows: int, rounds: int) -> int:
        """Size of a predict reply, from the request alone: the trainer's own estimate
        (ciphertexts) or rounds x rows x K float64 values."""
        estimate = getattr(self.trainer, "reply_bytes", None)
        return int(estimate(rows, rounds)) if estimate is not None else rounds * rows * self._k * 8

    def close(self) -> None:
        """Release the table's ledger lock (a DP party)."""
        if self.privacy is not None:
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
