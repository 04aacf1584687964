"""The label owner's round loop (GAL's coordinator).

It builds and consumes messages only: sockets belong to the transport, keys and noise to the
residual channel and the parties' trainers. Its own feature block is fitted locally through the
same :class:`FeatureParty` logic, without the wire.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ..align.ids import canonical_ids
from ..core.assistance import DEFAULT_ETA_MAX, assisted_learning_rate, combine, fit_assistance_weights, uniform_weights
from ..core.calibration import fit_party_multipliers
from ..core.memory import keep_large_blocks
from ..errors import BudgetExceeded, ConfigError, PartyRefused, PartyUnavailable, ProtocolError
from .. import messages as m
from ..messages import WEIGHTINGS
from .feature_party import HIDDEN, MEMBERSHIP_OPTION, FeatureParty
from ..seam import ResidualChannel
from .messenger import Messenger

log = logging.getLogger(__name__)

# Test rows per prediction request: bounds each reply (T x rows x K values) and its wire copies.
PREDICT_ROWS = 1 << 16
# A party's predictions are fitted to residuals on the labels' scale: anything larger than this
# times that scale is a malformed reply (1e150 from one party overflowed the weight fit and
# silently zeroed every step).
MAX_PREDICTION_RATIO = 1e6
# Predictions with an RMS beyond this many times the residuals' are left out of a line-searched round
# (a fit is smaller).
OUTSIZED_PREDICTIONS = 10.0
# The BLAKE2b personalization of the wire order's hash (changing it changes every run's row order).
WIRE_ORDER_KEY = b"securegal-order1"


@dataclass(frozen=True)
class RoundResult:
    round: int
    weights: dict[str, float]
    eta: float
    train_loss: float
    absent: tuple[str, ...] = ()


@dataclass
class GalModel:
    """What the label owner learned: F0 and, per round, the assistance weights and step."""

    init: np.ndarray
    parties: tuple[str, ...]
    rounds: list[RoundResult] = field(default_factory=list)
    stopped: str | None = None
    missing_at_predict: set[str] = field(default_factory=set)  # parties whose terms prediction had to leave out
    multipliers: dict[str, float] = field(default_factory=dict)  # set by LabelOwner.calibrate
    outsized: dict[str, list[int]] = field(default_factory=dict)  # party -> rounds its predictions were no fit


class FederationStopped(Exception):
    """Internal signal: the round cannot go on (budget refused, too few parties)."""


class LabelOwner:
    """Runs GAL for T rounds with the feature parties reachable through ``messenger``."""

    def __init__(self, *, own: FeatureParty, train_ids: np.ndarray, y_train: np.ndarray, loss,
                 peers: Sequence[str], messenger: Messenger | None, channel: ResidualChannel,
                 rounds: int = 10, weighting: str = "learned", eta: float | None = None, eta_max: float = DEFAULT_ETA_MAX,
                 min_parties: int = 1, task: str = "classification", setup_options: dict | None = None,
                 aligner: Callable[[Sequence, str], object] | None = None, align_ids: Sequence | None = None,
                 eval_ids: np.ndarray | None = None, hidden_membership: bool = False,
                 calibration: float | None = None, alone_channel: ResidualChannel | None = None):
        if rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {rounds}")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if eta is not None and not eta > 0:
            raise ConfigError(f"a fixed eta must be > 0, got {eta!r}")
        if peers and messenger is None:
            raise ConfigError("feature parties need a messenger")
        if hidden_membership and peers and aligner is None:
            raise ConfigError("hidden membership needs the private set intersection (an aligner)")
        self.own, self.loss, self.messenger = own, loss, messenger
        self.channel = channel
        self.train_ids = np.asarray(train_ids, dtype=np.int64)
        self.y = y_train
        self.peers = list(peers)
        self.rounds, self.weighting, self.eta, self.eta_max = rounds, weighting, eta, eta_max
        # None, or the penalty of calibrate()'s per-party multipliers (PrivacyPlan.owner_policy).
        self.calibration = calibration
        # Under label-DP: the plain layer of the label owner's own exact-label Alone model, which
        # calibrate() fits and weighs (None: no such model); the model itself once fitted.
        self.alone_channel = alone_channel
        self._alone: LabelOwner | None = None
        self.min_parties, self.task = min_parties, task
        self.setup_options = dict(setup_options or {})
        self.session = messenger.session if messenger else "local"
        self.n, self.k = len(self.train_ids), loss.n_outputs
        self.largest_prediction = MAX_PREDICTION_RATIO * max(1.0, float(np.abs(np.asarray(y_train, dtype=float)).max(
            initial=0.0)))
        # A label-private channel (label-DP) accounts only for the residuals it releases: every
        # other use of the labels must be fixed in advance (F0 = 0, uniform w, fixed eta), and the
        # label owner's own learner fits the same released residuals.
        self.private_labels = bool(getattr(self.channel, "private_labels", False))
        if self.private_labels and (weighting != "uniform" or eta is None):
            raise ConfigError("label-DP residuals need --weights uniform and a fixed --eta: fitted "
                              "weights and steps would use the labels outside the privacy budget")
        init = np.zeros(self.k) if self.private_labels else loss.init(y_train)
        self.model = GalModel(np.asarray(init, dtype=np.float64), (own.name, *self.peers))
        self.left_out: list[str] = []  # parties unreachable when the session opened
        self.F = np.tile(self.model.init, (self.n, 1))
        self._own_seq = 0
        # Private set intersection with every party before setup: ``aligner(ids, session)`` is the
        # label owner's PSI side (securegal.align.LabelOwnerPsi: it holds the PSI secret, not the
        # loop); ``align_ids[i]`` is the raw ID of the label owner's row i; ``eval_ids`` are the
        # validation and test rows, selected with the training rows.
        self.aligner, self.align_ids = aligner, align_ids
        self._id_keys: np.ndarray | None = None  # a hash of each row's ID: the order rows are named in (wire_order)
        self.eval_ids = np.asarray(eval_ids if eval_ids is not None else [], dtype=np.int64)
        self.handles: dict[str, np.ndarray] = {}  # party -> its row handle for each of our rows (-1: absent)
        self.common: np.ndarray | None = None  # our rows held by every party (None: not aligned)
        self.party_columns: dict[str, int] = {}
        self._P: np.ndarray | None = None  # one round's stacked predictions (see _stacked)
        self._work: dict[str, np.ndarray] = {}  # (n, K) work arrays reused across rounds (_buffer)
        # Hidden membership (docs/alignment.md): each party fits on all its rows and answers for
        # all of them; positions[p][i] is where our row i sits among p's rows (-1: absent), and
        # kept[p][t] p's opened round-t predictions on our rows (what prediction later uses).
        self.hidden_membership = bool(hidden_membership)
        self.party_handles: dict[str, np.ndarray] = {}
        self.positions: dict[str, np.ndarray] = {}
        self.kept: dict[str, dict[int, np.ndarray]] = {}
        # (row ids, {party: its per-round predictions on them}) kept by calibrate() for evaluation
        self._held: tuple[np.ndarray, dict[str, np.ndarray]] | None = None

    def _own(self, round: int, body: m.Body) -> m.Body:
        env = m.Envelope(self.session, round, self.own.name, self.own.name, self._own_seq, body)
        self._own_seq += 1
        return self.own.handle(env)

    def _setup_fields(self) -> dict:
        return dict(train_ids=self.train_ids, n_outputs=self.k, rounds=self.rounds, task=self.task,
                    options=self.setup_options)

    def _merged_setup(self, base: dict, party: str) -> dict:
        """``base`` with the channel's Setup fields for ``party``; their options add to base's."""
        fields = dict(self.channel.setup_fields(party))
        if "options" in fields:
            fields["options"] = {**base["options"], **fields["options"]}
        if party in self.positions:  # hidden membership: every row of the party, nothing about ours
            options = {**fields.get("options", base["options"]), MEMBERSHIP_OPTION: HIDDEN}
            return {**base, **fields, "options": options, "train_ids": self.party_handles[party]}
        return {**base, **fields, "train_ids": self._ids_for(party, base["train_ids"])}

    def setup(self) -> None:
        """Align rows with every party (private set intersection), then send each party its
        training rows (as its own row handles) and the session parameters."""
        least = self.own.policy.min_rows  # our own block's policy: checked before any party is asked
        if len(self.train_ids) < least:
            raise ConfigError(f"the label owner's own block needs at least {least} training rows (its policy "
                              f"min_rows); this run has {len(self.train_ids)}: nothing was sent to any party")
        if self.aligner is not None and self.peers and self.common is None:
            self.align()
        keep_large_blocks(self.F.nbytes)  # every round's n x K arrays, ours and the wire's (core.memory)
        base = self._setup_fields()
        self._own(0, m.Setup(**base))
        if not self.peers:
            return
        acks = self._joined(self.messenger.exchange(0, {p: m.Setup(**self._merged_setup(base, p)) for p in self.peers}))
        for p, ack in acks.items():  # the number of columns each party contributes (public)
            raw = ack.info.get("columns")
            if raw is None:
                continue
            if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
                raise ProtocolError(f"party {p!r} answered Setup with columns={raw!r:.40}, not a whole number "
                                    "of at most 9 digits")
            self.party_columns[p] = int(raw)

    def _joined(self, replies: dict) -> dict:
        """The parties' answers to a session-opening request: a refusal stops the run (a party that
        answers but will not join is misconfigured), an unreachable party is left out."""
        refused = [r for r in replies.values() if isinstance(r, (PartyRefused, ProtocolError))]
        if refused:
            raise refused[0]
        failed = {p: r for p, r in replies.items() if isinstance(r, Exception)}
        for p, exc in failed.items():
            log.warning("party %s left out of the session: %s", p, exc)
        self.peers = [p for p in self.peers if p not in failed]
        self.left_out += [p for p in failed if p not in self.left_out]
        if 1 + len(self.peers) < self.min_parties:
            raise PartyUnavailable(f"only {1 + len(self.peers)} parties joined, --min-parties is {self.min_parties}: "
                                   + "; ".join(f"{p}: {e}" for p, e in failed.items()))
        return {p: r for p, r in replies.items() if p in self.peers}

    @staticmethod
    def _finished(party: str, side, reply):
        """``side.finish(reply)``, a malformed reply's ProtocolError naming ``party``."""
        try:
            return side.finish(reply)
        except ProtocolError as exc:
            raise ProtocolError(f"PSI reply of {party!r}: {exc}") from None

    def align(self) -> None:
        """PSI with every party; keep the rows every party holds; tell each party which of its
        rows are used. Rows missing at some party are left out of training and evaluation.
        :meth:`setup` does this first unless it was already done (benchmarks time it apart)."""
        sides = {p: self.aligner(self.align_ids, self.session) for p in self.peers}
        replies = self._joined(self.messenger.exchange(0, {p: sides[p].request() for p in self.peers}))
        alignments = {p: self._finished(p, sides[p], reply) for p, reply in replies.items()}
        common = np.logical_and.reduce([a.matched for a in alignments.values()])
        keep = common[self.train_ids]
        if keep.sum() < 2:
            held = ", ".join(f"{p} {int(a.matched[self.train_ids].sum())}" for p, a in alignments.items())
            raise ConfigError(f"the parties hold only {int(keep.sum())} of the label owner's {len(self.train_ids)} "
                              f"training rows together (each: {held}): the intersection is too small to train on")
        self.common, self.handles = common, {p: a.handles for p, a in alignments.items()}
        self._keep_training_rows(keep)
        init = np.zeros(self.k) if self.private_labels else self.loss.init(self.y)
        self.model.init = np.asarray(init, dtype=np.float64)
        self.F = np.tile(self.model.init, (self.n, 1))
        used = np.union1d(self.train_ids, self.aligned(self.eval_ids))
        if self.hidden_membership:  # each party is told all of its rows: it learns nothing of the matching
            self.party_handles = {p: a.party_handles for p, a in alignments.items()}
            self.positions = {p: a.positions for p, a in alignments.items()}
            self.kept = {p: {} for p in alignments}
            selections = {p: alignments[p].selection_all() for p in self.peers}
        else:
            selections = {p: alignments[p].selection(used) for p in self.peers}
        self._joined(self.messenger.exchange(0, selections))
        for p in self.peers:  # our own record of how each party names our rows (for our self-audit)
            self.messenger.record_alignment(p, self.handles[p][used], np.asarray(self.align_ids)[used])
        log.info("aligned: %d training rows held by every party (of %d)", self.n, len(keep))

    def _keep_training_rows(self, keep: np.ndarray) -> None:
        """Train on the rows ``keep`` marks, in :meth:`wire_order`: the parties see the training rows
        (Setup, every round's residuals and replies) in that order, never in ours."""
        ids, y = self.train_ids[keep], self.y[keep]
        order = self.wire_order(ids)
        self.train_ids, self.y, self.n = ids[order], y[order], len(ids)

    def wire_order(self, ids: np.ndarray) -> np.ndarray:
        """The order in which rows ``ids`` are named to the parties once aligned: by a BLAKE2b
        hash of each row's canonical ID (as PSI encodes it), a function of the IDs alone, which a
        party holds for the rows it is sent, and the same in every run and version. Our own row
        order may follow the labels (a file sorted by class), and a party that knows a few labels
        would read the others off positions. Before alignment (none, or not yet) rows keep their
        numbers' order: the parties are told those numbers anyway."""
        if self.common is None:
            return np.arange(len(ids))
        if self._id_keys is None:
            _, encoded = canonical_ids(self.align_ids)
            self._id_keys = np.fromiter(
                (int.from_bytes(hashlib.blake2b(e, digest_size=8, person=WIRE_ORDER_KEY).digest(), "little")
                 for e in encoded), dtype=np.uint64, count=len(encoded))
        return np.argsort(self._id_keys[np.asarray(ids, dtype=np.int64)], kind="stable")

    def aligned(self, ids: np.ndarray) -> np.ndarray:
        """The rows of ``ids`` that every party holds (all of them before or without alignment)."""
        ids = np.asarray(ids, dtype=np.int64)
        return ids if self.common is None else ids[self.common[ids]]

    def _ids_for(self, party: str, ids: np.ndarray) -> np.ndarray:
        """How ``party`` names our rows ``ids``: its row handles once aligned."""
        return self.handles[party][ids] if party in self.handles else ids

    def alignment_state(self) -> dict[str, np.ndarray]:
        """What :meth:`resume` needs of the alignment (empty when not aligned): the common rows
        and each party's handles for our rows. Checkpointed by the networked deployment."""
        if self.common is None:
            return {}
        return {"common": self.common, **{f"handles.{p}": h for p, h in self.handles.items()}}

    def resume(self, rounds: Sequence[RoundResult], F_history: Sequence[np.ndarray], peers: Sequence[str],
               alignment: dict[str, np.ndarray] | None = None) -> None:
        """Continue a checkpointed session instead of :meth:`setup`.

        ``F_history[s]`` is F after round s (s = 0..len(rounds)). The feature parties kept their
        session (and its row handles, restored from ``alignment``); the label owner's own block is
        refitted on the recorded residuals, which gives the same round models because the local
        fit is deterministic.
        """
        if alignment:
            common = np.asarray(alignment["common"], dtype=bool)
            if self.align_ids is None or common.shape != (len(self.align_ids),):
                raise ConfigError("the checkpoint's alignment does not match the label owner's rows")
            self.common = common
            self.handles = {k.split(".", 1)[1]: np.asarray(v, dtype=np.int64) for k, v in alignment.items()
                            if k.startswith("handles.")}
            self._keep_training_rows(common[self.train_ids])
            init = np.zeros(self.k) if self.private_labels else self.loss.init(self.y)
            self.model.init = np.asarray(init, dtype=np.float64)
        keep_large_blocks(self.n * self.k * 8)
        if len(F_history) != len(rounds) + 1:
            raise ConfigError(f"need F after each of rounds 0..{len(rounds)}, got {len(F_history)} arrays")
        for s, F in enumerate(F_history):
            if np.shape(F) != (self.n, self.k):
                raise ConfigError(f"checkpointed F after round {s} has shape {np.shape(F)}, expected {(self.n, self.k)}")
        unknown = set(peers) - set(self.peers)
        if unknown:
            raise ConfigError(f"checkpoint names parties {sorted(unknown)} that this federation does not have")
        self._own(0, m.Setup(**self._setup_fields()))
        for s in range(1, len(rounds) + 1):
            self._own(s, m.FitRequest(self.loss.residual(self.y, F_history[s - 1])))
        # the checkpoint lists the parties that joined: the others were left out when the session opened
        self.left_out = [p for p in self.peers if p not in set(peers)]
        self.peers = [p for p in self.peers if p in set(peers)]
        self.model.rounds = list(rounds)
        self.F = np.array(F_history[-1], dtype=np.float64)

    def fit(self, on_round: Callable[[RoundResult], None] | None = None) -> GalModel:
        """Run the remaining rounds; a refusal or too few parties stops the run with what was learned."""
        try:
            for t in range(len(self.model.rounds) + 1, self.rounds + 1):
                result = self._round(t)
                self.model.rounds.append(result)
                if on_round is not None:
                    on_round(result)
        except FederationStopped as stop:
            self.model.stopped = str(stop)
            log.warning("run stopped after %d rounds: %s", len(self.model.rounds), stop)
        self._P = None  # the rounds' prediction buffer (M x n x K) is not needed for prediction
        return self.model

    def _round(self, t: int) -> RoundResult:
        r = self.loss.residual(self.y, self.F)
        P = self._stacked(1 + len(self.peers))  # row 0: our own block's predictions, then each answer's
        sent = {p: self._residuals_for(p, r) for p in self.peers}
        requests = {p: m.FitRequest(self.channel.seal(sent[p], t, p)) for p in self.peers}
        bounds = {p: self.channel.reply_bytes(p, sent[p].shape) for p in self.peers}
        del sent
        names, absent, stopped = self._gathered(t, requests, P, bounds)
        own_r = self.channel.seal(r, t, self.own.name) if self.private_labels else r
        P[0] = self._own(t, m.FitRequest(own_r)).predictions
        if stopped is not None:  # a party's budget refused this round's releases
            raise FederationStopped(stopped)
        if self.eta is None:
            names = self._without_outsized(t, r, P, names, absent)
        if len(names) < self.min_parties:
            raise FederationStopped(f"round {t}: only {len(names)} parties answered, --min-parties is {self.min_parties}")
        P = P[:len(names)]
        if self.weighting == "learned" and len(names) > 1:
            w = fit_assistance_weights(r, P, self.loss.local_loss)
        else:
            w = uniform_weights(len(names))
        direction = combine(w, P, out=self._buffer("direction"))
        if self.eta is not None:
            eta = float(self.eta)
        else:
            eta = assisted_learning_rate(self.loss, self.y, self.F, direction, self.eta_max)
        if not (np.isfinite(w).all() and np.isfinite(eta)):  # F stays as the rounds before left it
            raise FederationStopped(f"round {t}: the weights ({', '.join(f'{x:.3g}' for x in w)}) or the step "
                                    f"({eta:.3g}) came out non-finite")
        self.F += np.multiply(direction, eta, out=direction)
        weights = {p: 0.0 for p in self.model.parties}
        weights.update({p: float(wi) for p, wi in zip(names, w)})
        # a party unreachable when the session opened is absent from every round (weight 0), and listed
        return RoundResult(t, weights, eta, self.loss.value(self.y, self.F), tuple(absent) + tuple(self.left_out))

    def _without_outsized(self, t: int, r: np.ndarray, P: np.ndarray, names: list[str],
                          absent: list[str]) -> list[str]:
        """``names`` without the parties whose predictions are far larger than the residuals, their
        rows of ``P`` closed up (from row 1; row 0 is our own block). A fit to the residuals is no
        larger than they are (a least-squares fit is a projection); a malicious party's +-100 per
        class kept a weight of about 0.01, dominated the combined step and stalled the line search
        at the prior (review W F3b). Such a party is left out of the round like a malformed reply,
        named in the log and in the model (metrics.json's ``outsized_predictions``)."""
        scale = float(np.sqrt(np.mean(np.square(r)))) or 1e-12
        kept = [names[0]]
        for i in range(1, len(names)):
            size = float(np.sqrt(np.mean(np.square(P[i]))))
            if size > OUTSIZED_PREDICTIONS * scale:
                log.warning("round %d: %s's predictions (RMS %.3g) are %.0f times the residuals' (RMS %.3g): not a "
                            "fit to them; left out of the round (check that party)", t, names[i], size,
                            size / scale, scale)
                self.model.outsized.setdefault(names[i], []).append(t)
                absent.append(names[i])
                continue
            if len(kept) != i:
                P[len(kept)] = P[i]
            kept.append(names[i])
        return kept

    def _gathered(self, t: int, requests: dict, P: np.ndarray,
                  bounds: dict[str, int]) -> tuple[list[str], list[str], str | None]:
        """Each party's round-t reply opened into the next free row of ``P`` (from row 1) as it
        arrives, so one reply is held at a time, not M; the names in ``P``'s order (ours first), the
        parties dropped from the round, and a budget refusal's message (None if none refused)."""
        names, absent, stopped = [self.own.name], [], None
        for party, reply in self.messenger.exchange_each(t, requests, bounds) if requests else ():
            if isinstance(reply, BudgetExceeded):
                stopped = stopped or str(reply)
                continue
            try:
                if isinstance(reply, Exception):
                    raise reply
                P[len(names)] = self._opened(party, reply.predictions, t)
                names.append(party)
            except (PartyUnavailable, PartyRefused, ProtocolError) as exc:
                again = bool(self.model.rounds) and party in self.model.rounds[-1].absent  # said last round
                log.log(logging.INFO if again else logging.WARNING, "round %d: party %s dropped from the round: %s",
                        t, party, exc)
                absent.append(party)
        return names, absent, stopped

    def _stacked(self, m_parties: int) -> np.ndarray:
        """The (M, n, K) buffer of one round's predictions, reused across rounds: at a million
        rows a fresh one per round costs more in first-touch page faults than the round's products."""
        if self._P is None or self._P.shape[1:] != (self.n, self.k) or len(self._P) < m_parties:
            self._P = np.empty((m_parties, self.n, self.k))
        return self._P[:m_parties]

    def _buffer(self, name: str) -> np.ndarray:
        """An (n, K) float64 work array kept across rounds under ``name`` (see :meth:`_stacked`)."""
        buf = self._work.get(name)
        if buf is None or buf.shape != (self.n, self.k):
            buf = self._work[name] = np.empty((self.n, self.k))
        return buf

    def _residuals_for(self, party: str, r: np.ndarray) -> np.ndarray:
        """What ``party`` is sent: ``r`` itself, or under hidden membership a residual for every
        row of the party, zero where we have no training row (encrypted, so it cannot tell)."""
        if party not in self.positions:
            return r
        full = np.zeros((len(self.party_handles[party]), self.k))
        full[self.positions[party][self.train_ids]] = r
        return full

    def _opened(self, party: str, payload, t: int) -> np.ndarray:
        """``party``'s round-t predictions on our training rows; under hidden membership it
        answered for all its rows: ours are kept (for prediction), the others are dropped."""
        if party not in self.positions:
            return self._bounded(self.channel.open(payload, t, party, (self.n, self.k)), party, t)
        full = self._bounded(self.channel.open(payload, t, party, (len(self.party_handles[party]), self.k)), party, t)
        held = self.positions[party] >= 0
        ours = np.zeros((len(held), self.k))
        ours[held] = full[self.positions[party][held]]
        self.kept[party][t] = ours
        return ours[self.train_ids]

    def _bounded(self, preds: np.ndarray, party: str, t: int) -> np.ndarray:
        """``preds`` unless some value exceeds :attr:`largest_prediction` (ProtocolError naming the party)."""
        largest = float(max(preds.max(initial=0.0), -preds.min(initial=0.0)))  # no |preds| copy (n x K)
        if largest > self.largest_prediction:
            raise ProtocolError(f"predictions of {party!r} in round {t}: largest |value| {largest:.3g} exceeds "
                                f"{self.largest_prediction:.3g} ({MAX_PREDICTION_RATIO:g} times the labels' scale)")
        return preds

    def predict_rounds(self, sample_ids: np.ndarray) -> np.ndarray:
        """Scores F_t on ``sample_ids`` after each round t = 0..T: shape (T+1, n, K).

        Every party computes its own per-round predictions on its own columns; the label owner
        combines them with the learned weights and steps. Under hidden membership a party's terms
        are its round replies on these rows (it answered for all its rows), so nothing is sent.
        The per-round sums (T, n, K) are held once, beside one party's predictions at a time.
        """
        ids = np.asarray(sample_ids, dtype=np.int64)
        T = len(self.model.rounds)
        if T == 0:
            return np.tile(self.model.init, (1, len(ids), 1))
        F = np.zeros((T + 1, len(ids), self.k))
        steps = F[1:]  # each round's step, summed over the parties, then their running sum: F_t - F_0
        for party, preds in self._rounds_for(ids):  # one party at a time
            steps += np.multiply(preds, self._coefficients(party)[:, None, None], out=preds)
        np.cumsum(steps, axis=0, out=steps)
        F += self.model.init
        if self._alone is not None and self.model.multipliers.get(self._alone.own.name):
            F += self.model.multipliers[self._alone.own.name] * self._alone.predict_rounds(ids)
        return F

    def _coefficients(self, party: str) -> np.ndarray:
        """eta_t * w_t[party] per round."""
        return np.array([r.eta * r.weights.get(party, 0.0) for r in self.model.rounds])

    def _rounds_for(self, ids: np.ndarray):
        """:meth:`_party_rounds`, or for the rows :meth:`calibrate` already asked for, copies of
        those replies (the parties that answered then)."""
        if self._held is not None and np.array_equal(self._held[0], ids):
            for party, preds in self._held[1].items():
                yield party, preds.copy()
            return
        yield from self._party_rounds(ids)

    def _party_rounds(self, ids: np.ndarray):
        """(party, its per-round predictions (T, n, K) on ``ids``) for the label owner and every party
        with a non-zero weight; a party that does not answer is left out (``missing_at_predict``).

        Each party is asked for at most ``PREDICT_ROWS`` rows per request (a whole (T, n, K)
        reply and its wire copies were the label owner's memory peak); its answers fill one
        buffer, reused from party to party: an item is valid until the next one is taken, and the
        consumer may overwrite it. A party that fails on any chunk is left out entirely.
        """
        T = len(self.model.rounds)
        buffer = np.empty((T, len(ids), self.k))

        order = self.wire_order(ids)

        def gathered(party: str, ask) -> bool:  # fills ``buffer``; False if the party did not answer
            for start in range(0, len(ids), PREDICT_ROWS):
                rows = order[start:start + PREDICT_ROWS]  # asked in the wire order, kept in the caller's
                preds = ask(ids[rows])
                if isinstance(preds, Exception):
                    # Like a party dropped from a round: its terms count as zero, loudly;
                    # metrics.json lists it under missing_at_predict.
                    again = party in self.model.missing_at_predict  # said once per run (validation, then test)
                    log.log(logging.INFO if again else logging.WARNING,
                            "prediction leaves out party %s, which did not answer: %s", party, preds)
                    self.model.missing_at_predict.add(party)
                    return False
                buffer[:, rows] = preds
            return True

        def own(chunk: np.ndarray) -> np.ndarray:
            return np.asarray(self._own(0, m.PredictRequest(chunk, T)).predictions)

        def peer(party: str):
            def ask(chunk: np.ndarray) -> np.ndarray | Exception:
                bound = self.channel.reply_bytes(party, (T, len(chunk), self.k))
                reply = self.messenger.exchange(0, {party: m.PredictRequest(self._ids_for(party, chunk), T)},
                                                {party: bound})[party]
                if isinstance(reply, Exception):
                    return reply
                try:
                    return self._bounded(self.channel.open(reply.predictions, 0, party, (T, len(chunk), self.k)),
                                         party, 0)
                except ProtocolError as exc:  # a malformed answer leaves the party out, as no answer does
                    return exc
            return ask

        if gathered(self.own.name, own):
            yield self.own.name, buffer
        used = [p for p in self.peers if any(r.weights.get(p, 0.0) != 0.0 for r in self.model.rounds)]
        for party in used:
            if party in self.positions:  # hidden membership: no request, which would name our rows
                zeros = np.zeros((len(ids), self.k))
                yield party, np.stack([self.kept[party][t][ids] if t in self.kept[party] else zeros
                                       for t in range(1, T + 1)])
                continue
            if gathered(party, peer(party)):
                yield party, buffer

    def calibrate(self, sample_ids: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Scale each party's whole contribution by a multiplier fitted on held-out rows.

        ``sample_ids`` are rows no session trained on (the validation rows) and ``y`` their labels
        as the loss takes them. Their predictions are the replies evaluation uses (kept, not asked
        for again), so this releases nothing new; the multipliers (:func:`~securegal.core.calibration.fit_party_multipliers`,
        penalty ``self.calibration``) rescale every round's weights. Returns {party: multiplier}.
        """
        if self.calibration is None:
            raise ConfigError("this label owner's policy has no calibration")
        ids = np.asarray(sample_ids, dtype=np.int64)
        if not self.model.rounds or len(ids) == 0:
            return {}
        names, terms, held = [], [], {}
        for party, preds in self._party_rounds(ids):
            names.append(party)
            held[party] = preds.copy()
            terms.append(np.tensordot(self._coefficients(party), preds, axes=1))
        # Evaluating these rows later reuses the replies instead of asking again: under CKKS+DP
        # each predict reply is a release the party plans for (a flood).
        self._held = (ids.copy(), held)
        prior = np.ones(len(terms))
        if self.private_labels and self.alone_channel is not None:
            self._alone = self._exact_alone()
            names.append(self._alone.own.name)
            terms.append(self._alone.predict_rounds(ids)[-1])
            prior = np.append(prior, 0.0)  # without evidence the label-DP model stays as it was
        a = fit_party_multipliers(self.loss, y, self.model.init, np.stack(terms), self.calibration, prior=prior)
        scale = dict(zip(names, (float(v) for v in a)))
        self.model.rounds = [replace(r, weights={p: w * scale.get(p, 1.0) for p, w in r.weights.items()})
                             for r in self.model.rounds]
        self.model.multipliers = scale
        return scale

    def _exact_alone(self) -> "LabelOwner":
        """Under label-DP: the label owner's own block boosted alone on the exact labels (Alone,
        learned step), for :meth:`calibrate` to weigh. It talks only to a fresh local copy of the
        own block and never enters a residual, so it costs no label budget."""
        own = FeatureParty(f"{self.own.name}:alone", self.own.table, self.own.trainer_factory)
        alone = LabelOwner(own=own, train_ids=self.train_ids, y_train=self.y, loss=self.loss, peers=(),
                           messenger=None, channel=self.alone_channel, rounds=len(self.model.rounds),
                           eta_max=self.eta_max, task=self.task, setup_options=self.setup_options)
        alone.setup()
        alone.fit()
        return alone

    def finish(self) -> None:
        self._held = None
        if self._alone is not None:
            self._alone.finish()
        self._own(0, m.Finish())
        if self.peers:
            self.messenger.exchange(0, {p: m.Finish() for p in self.peers})
