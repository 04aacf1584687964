"""A small fully connected network regressed on the residuals (local loss l2 or l1)."""
from __future__ import annotations

from torch import nn

from . import _torchfit
from ._validate import check_positive_int
from .base import check_fit_inputs


class MLPLearner(_torchfit.TorchLearner):
    """ReLU MLP fitted with Adam; full batch by default, minibatches with ``batch_size``.

    Residual columns are standardised before training and the scaling undone at prediction, so
    the same settings suit cross-entropy residuals (in [-1, 1]) and regression residuals. All
    randomness comes from ``seed`` through a local ``torch.Generator``: two fits with the same
    seed and data give the same model.
    """

    name = "mlp"

    def __init__(self, local_loss: str = "l2", hidden: tuple[int, ...] = (64,), epochs: int = 200,
                 lr: float = 1e-2, batch_size: int | None = None, weight_decay: float = 0.0,
                 seed: int = 0):
        self.hidden = tuple(check_positive_int("hidden layer size", h) for h in hidden)
        self._configure(local_loss, epochs, lr, batch_size, weight_decay, seed)

    def fit(self, X, r) -> _torchfit.TorchModel:
        X, r = check_fit_inputs(X, r)
        gen = _torchfit.seeded_generator(self.seed)
        layers: list[nn.Module] = []
        width = X.shape[1]
        for h in self.hidden:
            layers += [_torchfit.linear(width, h, gen), nn.ReLU()]
            width = h
        layers.append(_torchfit.linear(width, r.shape[1], gen))
        shaper = _torchfit.InputShaper(X.shape[1], (X.shape[1],))
        return _torchfit.train(nn.Sequential(*layers), shaper, X, r, self.settings, gen)
