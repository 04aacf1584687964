"""A small convolutional network for image patches, regressed on the residuals.

A party's features are its patch of each image, flattened row-major; the learner reshapes
them to (1, h, w). Patches can be tiny (4x2 from 8x8 digits split 8 ways), so each block
pools a spatial axis only while that axis is at least 4 pixels long.
"""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from . import _torchfit
from ._validate import check_positive_int
from .base import check_fit_inputs


def _check_patch_shape(patch_shape) -> tuple[int, int]:
    try:
        h, w = patch_shape
    except (TypeError, ValueError):
        raise ConfigError(f"patch_shape must be a pair (height, width), got {patch_shape!r}") from None
    return check_positive_int("patch height", h), check_positive_int("patch width", w)


class CNNLearner(_torchfit.TorchLearner):
    """Conv(3x3)-ReLU-[pool] blocks, then a hidden dense layer; Adam on minibatches.

    ``patch_shape`` is the (height, width) of the party's patch; features arrive flattened,
    so ``X.shape[1]`` must equal ``height * width``. Seeded like :class:`MLPLearner`.
    """

    name = "cnn"

    def __init__(self, patch_shape, local_loss: str = "l2", channels: tuple[int, ...] = (16, 32),
                 hidden: int = 64, epochs: int = 10, lr: float = 3e-3, batch_size: int | None = 128,
                 weight_decay: float = 0.0, seed: int = 0):
        self.patch_shape = _check_patch_shape(patch_shape)
        self.channels = tuple(check_positive_int("channel count", c) for c in channels)
        if not self.channels:
            raise ConfigError("channels must name at least one convolution block")
        self.hidden = check_positive_int("hidden", hidden)
        self._configure(local_loss, epochs, lr, batch_size, weight_decay, seed)

    def fit(self, X, r) -> _torchfit.TorchModel:
        X, r = check_fit_inputs(X, r)
        h, w = self.patch_shape
        if X.shape[1] != h * w:
            raise ValueError(f"patch_shape {self.patch_shape} needs {h * w} features per row, got {X.shape[1]}")
        gen = _torchfit.seeded_generator(self.seed)
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in self.channels:
            layers += [_torchfit.conv2d(c_in, c_out, gen), nn.ReLU()]
            pool = (2 if h >= 4 else 1, 2 if w >= 4 else 1)
            if pool != (1, 1):
                layers.append(nn.MaxPool2d(pool))
                h, w = h // pool[0], w // pool[1]
            c_in = c_out
        layers += [nn.Flatten(), _torchfit.linear(c_in * h * w, self.hidden, gen), nn.ReLU(),
                   _torchfit.linear(self.hidden, r.shape[1], gen)]
        shaper = _torchfit.InputShaper(X.shape[1], (1, *self.patch_shape))
        return _torchfit.train(nn.Sequential(*layers), shaper, X, r, self.settings, gen)
