"""Feature reconstruction (b): a learned inversion network from returned predictions to features.

A small MLP (one tanh hidden layer plus a linear skip path) maps the victim's standardized,
stacked per-round predictions to its features. It is trained on the k known rows only, full
batch with Adam and weight decay, from a seeded local generator on the CPU (the global RNG is
never touched). With at least ten known rows a fifth of them is held out: training keeps the
state with the lowest held-out error, and falls back to the known rows' mean when no state
beats it (noised predictions). Unlike equality solving it does not assume a linear learner.
"""
from __future__ import annotations

import numpy as np
import torch

from .features import KnownRows, score_features
from .result import AttackResult
from .views import stack_rounds, standardize

NAME = "inversion_net"


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


def reconstruct(prediction_rounds: list[np.ndarray], known: KnownRows, seed: int = 0,
                hidden: int = 64, steps: int = 1500, lr: float = 1e-2,
                weight_decay: float = 1e-3, check_every: int = 25) -> np.ndarray:
    """Train on the known rows and estimate the victim's features for all n rows."""
    Z = standardize(stack_rounds(prediction_rounds))
    known.check_rows(Z.shape[0])
    mu = known.values.mean(axis=0)
    sd = known.values.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    generator = torch.Generator().manual_seed(int(seed))
    net = _InversionNet(Z.shape[1], known.values.shape[1], hidden, generator)
    x_all = torch.from_numpy(Z)
    y_all = torch.from_numpy((known.values - mu) / sd)
    order = torch.randperm(known.index.size, generator=generator)
    n_val = known.index.size // 5 if known.index.size >= 10 else 0
    val, fit = order[:n_val], order[n_val:]
    x_fit, y_fit = x_all[torch.from_numpy(known.index)[fit]], y_all[fit]
    x_val, y_val = x_all[torch.from_numpy(known.index)[val]], y_all[val]
    best_err = float(torch.mean(y_val**2)) if n_val else np.inf  # the mean's held-out error
    best_state = None
    optim = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only add synchronisation
    try:
        for step in range(1, steps + 1):
            optim.zero_grad()
            loss = torch.mean((net(x_fit) - y_fit) ** 2)
            loss.backward()
            optim.step()
            if n_val and (step % check_every == 0 or step == steps):
                with torch.no_grad():
                    err = float(torch.mean((net(x_val) - y_val) ** 2))
                if err < best_err:
                    best_err, best_state = err, {k: v.clone() for k, v in net.state_dict().items()}
        if n_val and best_state is None:
            return np.tile(mu, (Z.shape[0], 1))
        if best_state is not None:
            net.load_state_dict(best_state)
        with torch.no_grad():
            return net(x_all).numpy() * sd + mu
    finally:
        torch.set_num_threads(threads)


def run(prediction_rounds: list[np.ndarray], known: KnownRows, truth: np.ndarray,
        attacker: str, victim: str, seed: int = 0, steps: int = 1500) -> list[AttackResult]:
    """Train the inversion network and score it on the unknown rows."""
    estimate = reconstruct(prediction_rounds, known, seed, steps=steps)
    return score_features(NAME, attacker, victim, estimate, truth, known)
