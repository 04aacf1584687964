"""Shared training loop for the torch learners (MLP, CNN).

Everything random (initial weights, minibatch order) comes from a local ``torch.Generator``
seeded by the learner; the global torch RNG is never read or advanced. Layers are built with
``torch.nn.utils.skip_init`` (no default initialisation) and then initialised from that generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ._validate import check_positive_int, check_seed
from .base import check_local_loss


def seeded_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(check_seed(seed))


def linear(n_in: int, n_out: int, gen: torch.Generator) -> nn.Linear:
    """A ``nn.Linear`` initialised like PyTorch's default (Kaiming-uniform) from ``gen``."""
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out, dtype=torch.float32)
    _init(layer.weight, layer.bias, n_in, gen)
    return layer


def conv2d(c_in: int, c_out: int, gen: torch.Generator) -> nn.Conv2d:
    """A 3x3 same-padding convolution initialised from ``gen``."""
    layer = nn.utils.skip_init(nn.Conv2d, c_in, c_out, 3, padding=1, dtype=torch.float32)
    _init(layer.weight, layer.bias, c_in * 9, gen)
    return layer


def _init(weight: torch.Tensor, bias: torch.Tensor, fan_in: int, gen: torch.Generator) -> None:
    with torch.no_grad():
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=gen)
        bound = 1.0 / math.sqrt(fan_in)
        bias.uniform_(-bound, bound, generator=gen)


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser settings shared by the torch learners (validated once, in the constructor)."""

    local_loss: str
    epochs: int
    lr: float
    batch_size: int | None
    weight_decay: float

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        if not self.lr > 0:
            raise ConfigError(f"learning rate lr must be > 0, got {self.lr!r}")
        if self.batch_size is not None:
            check_positive_int("batch_size", self.batch_size)
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")


class TorchLearner:
    """What the torch learners share: their :class:`TrainSettings`, seed and local loss."""

    def _configure(self, local_loss: str, epochs: int, lr: float, batch_size: int | None,
                   weight_decay: float, seed: int) -> None:
        self.settings = TrainSettings(check_local_loss(local_loss), epochs, lr, batch_size, weight_decay)
        self.seed = check_seed(seed)

    @property
    def local_loss(self) -> str:
        return self.settings.local_loss


@dataclass(frozen=True)
class TorchModel:
    """A trained network plus the residual scaling it was trained under."""

    net: nn.Module
    to_input: "InputShaper"
    r_mean: np.ndarray
    r_scale: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        inputs = self.to_input(np.asarray(X, dtype=np.float64))
        self.net.eval()
        with torch.no_grad():
            out = self.net(inputs).double().numpy()
        return out * self.r_scale + self.r_mean


class InputShaper:
    """Turns a (n, d) float array into the network's input tensor, checking d."""

    def __init__(self, n_features: int, shape: tuple[int, ...]):
        self.n_features = n_features
        self.shape = shape

    def __call__(self, X: np.ndarray) -> torch.Tensor:
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape (n, {self.n_features}), got {X.shape}")
        return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).reshape(-1, *self.shape)


def train(net: nn.Module, to_input: InputShaper, X: np.ndarray, r: np.ndarray,
          settings: TrainSettings, gen: torch.Generator) -> TorchModel:
    """Fit ``net`` to the residuals ``r`` (standardised per column) with Adam; return the model."""
    r_mean = r.mean(axis=0)
    r_scale = r.std(axis=0)
    r_scale = np.where(r_scale > 1e-12, r_scale, 1.0)
    inputs = to_input(X)
    target = torch.from_numpy(((r - r_mean) / r_scale).astype(np.float32))
    loss_fn = nn.MSELoss() if settings.local_loss == "l2" else nn.L1Loss()
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    n = inputs.shape[0]
    batch = n if settings.batch_size is None else min(settings.batch_size, n)
    net.train()
    for _ in range(settings.epochs):
        order = torch.randperm(n, generator=gen) if batch < n else torch.arange(n)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(inputs[idx]), target[idx])
            loss.backward()
            opt.step()
    net.eval()
    return TorchModel(net=net, to_input=to_input, r_mean=r_mean, r_scale=r_scale)
