"""Feature reconstruction (b): a learned inversion network from returned predictions to features.

A small MLP (one tanh hidden layer plus a linear skip path) maps the victim's standardized,
stacked per-round predictions to its features. It is trained on the k known rows only, full
batch with Adam and weight decay, from a seeded local generator on the CPU (the global RNG is
never touched). With at least ten known rows a fifth of them is held out: training keeps the
state with the lowest held-out error, and falls back to the known rows' mean when no state
beats it (noised predictions); with 3 to 9 rows leave-one-out makes that choice, with fewer
the mean is all it can do. Unlike equality solving it does not assume a linear learner.
"""
from __future__ import annotations

import numpy as np
import torch

from .features import KnownRows, score_features
from .result import AttackResult
from .views import stack_rounds, standardize

NAME = "inversion_net"
LOO_STEPS = 300  # training steps of each leave-one-out fit (few known rows fit fast)


class _InversionNet(torch.nn.Module):
    def __init__(self, n_in: int, n_out: int, hidden: int, generator: torch.Generator):
        super().__init__()
        self.hidden = torch.nn.Linear(n_in, hidden, dtype=torch.float64)
        self.out = torch.nn.Linear(hidden, n_out, dtype=torch.float64)
        self.skip = torch.nn.Linear(n_in, n_out, dtype=torch.float64)
        with torch.no_grad():
            for layer in (self.hidden, self.out, self.skip):
                bound = 1.0 / np.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x))) + self.skip(x)


def _train(x_fit: torch.Tensor, y_fit: torch.Tensor, x_val: torch.Tensor | None, y_val: torch.Tensor | None,
           generator: torch.Generator, hidden: int, steps: int, lr: float, weight_decay: float,
           check_every: int) -> _InversionNet | None:
    """Full-batch Adam; with a held-out set, the state with the lowest held-out error, or None
    when no state beats predicting the mean (zero in standardized units)."""
    net = _InversionNet(x_fit.shape[1], y_fit.shape[1], hidden, generator)
    optim = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    best_err = float(torch.mean(y_val**2)) if x_val is not None else np.inf
    best_state = None
    for step in range(1, steps + 1):
        optim.zero_grad()
        loss = torch.mean((net(x_fit) - y_fit) ** 2)
        loss.backward()
        optim.step()
        if x_val is not None and (step % check_every == 0 or step == steps):
            with torch.no_grad():
                err = float(torch.mean((net(x_val) - y_val) ** 2))
            if err < best_err:
                best_err, best_state = err, {k: v.clone() for k, v in net.state_dict().items()}
    if x_val is None:
        return net
    if best_state is None:
        return None
    net.load_state_dict(best_state)
    return net


def reconstruct(prediction_rounds: list[np.ndarray], known: KnownRows, seed: int = 0,
                hidden: int = 64, steps: int = 1500, lr: float = 1e-2,
                weight_decay: float = 1e-3, check_every: int = 25) -> np.ndarray:
    """Train on the known rows and estimate the victim's features for all n rows."""
    Z = standardize(stack_rounds(prediction_rounds))
    known.check_rows(Z.shape[0])
    k = known.index.size
    mu = known.values.mean(axis=0)
    sd = known.values.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    generator = torch.Generator().manual_seed(int(seed))
    x_k = torch.from_numpy(Z[known.index])
    y_k = torch.from_numpy((known.values - mu) / sd)
    mean_guess = np.tile(mu, (Z.shape[0], 1))
    args = (generator, hidden, steps, lr, weight_decay, check_every)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only add synchronisation
    try:
        if k >= 10:
            order = torch.randperm(k, generator=generator)
            val, fit = order[: k // 5], order[k // 5:]
            net = _train(x_k[fit], y_k[fit], x_k[val], y_k[val], *args)
        elif k >= 3:  # too few rows to hold out a fifth: leave-one-out decides network vs mean
            net_err = mean_err = 0.0
            quick = (generator, hidden, min(steps, LOO_STEPS), lr, weight_decay, check_every)
            for i in range(k):
                rest = torch.tensor([j for j in range(k) if j != i])
                loo = _train(x_k[rest], y_k[rest], None, None, *quick)
                with torch.no_grad():
                    net_err += float(torch.sum((loo(x_k[i:i + 1]) - y_k[i]) ** 2))
                mean_err += float(torch.sum((y_k[rest].mean(dim=0) - y_k[i]) ** 2))
            net = _train(x_k, y_k, None, None, *args) if net_err < mean_err else None
        else:
            net = None
        if net is None:
            return mean_guess
        with torch.no_grad():
            return net(torch.from_numpy(Z)).numpy() * sd + mu
    finally:
        torch.set_num_threads(threads)


def run(prediction_rounds: list[np.ndarray], known: KnownRows, truth: np.ndarray,
        attacker: str, victim: str, seed: int = 0, steps: int = 1500) -> list[AttackResult]:
    """Train the inversion network and score it on the unknown rows."""
    estimate = reconstruct(prediction_rounds, known, seed, steps=steps)
    return score_features(NAME, attacker, victim, estimate, truth, known)
