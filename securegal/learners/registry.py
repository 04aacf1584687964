"""Learners by name."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Learner
from .linear import LinearLearner

LEARNERS = ("linear",)


def make_learner(name: str, *, local_loss: str = "l2", seed: int = 0, patch_shape: tuple[int, int] | None = None,
                 **options) -> Learner:
    """A fresh learner called ``name`` for one party."""
    if name == "linear":
        return LinearLearner(local_loss=local_loss, **options)
    raise ConfigError(f"unknown learner {name!r}; choose one of {', '.join(LEARNERS)}")
