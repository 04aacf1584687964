"""Build a local learner by name: ``make_learner("mlp", local_loss="l1", seed=3)``.

The registry names each learner and says in one line what it is without importing it: torch
and scikit-learn load only when a learner is built, so the command line's help stays fast.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class LearnerInfo:
    """Where a learner class lives (``module:Class``) and a one-line summary for users."""

    path: str
    summary: str

    def load(self) -> type:
        module, cls = self.path.split(":")
        return getattr(importlib.import_module(module, __package__), cls)


LEARNERS = {
    "linear": LearnerInfo(".linear:LinearLearner", "ridge (l2) or least absolute deviations (l1); CKKS (l2), DP"),
    "mlp": LearnerInfo(".mlp:MLPLearner", "small fully connected network (torch, Adam); DP (DP-GD)"),
    "cnn": LearnerInfo(".cnn:CNNLearner", "small convolutional network for image patches (torch)"),
    "gb": LearnerInfo(".gb:GBLearner", "gradient-boosted trees (scikit-learn), one ensemble per output"),
    "rff": LearnerInfo(".rff:RFFLearner", "kernel ridge on random Fourier features (RBF); CKKS"),
}


def describe() -> str:
    """One line per learner, ``name  summary``, for help texts."""
    width = max(map(len, LEARNERS))
    return "\n".join(f"  {name:<{width}}  {info.summary}" for name, info in LEARNERS.items())


def learner_class(name: str) -> type:
    """The class of learner ``name``; refuses an unknown name with the list of known ones."""
    if name not in LEARNERS:
        raise ConfigError(f"unknown learner {name!r}; choose one of {', '.join(LEARNERS)}")
    return LEARNERS[name].load()


def make_learner(name: str, *, local_loss: str = "l2", seed: int = 0, patch_shape=None, **options):
    """A learner of kind ``name`` (one of :data:`LEARNERS`) with its own ``options``.

    ``seed`` is passed to learners that use randomness (linear ridge has none);
    ``patch_shape`` (height, width) is required by ``cnn``; the other learners see the flattened
    pixels as plain features and ignore it.
    """
    cls = learner_class(name)
    params = inspect.signature(cls.__init__).parameters
    allowed = sorted(set(params) - {"self", "local_loss", "seed", "patch_shape"})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"learner {name!r} has no option {', '.join(unknown)}; "
                         f"its options are: {', '.join(allowed) or 'none'}")
    kwargs = dict(options, local_loss=local_loss)
    if "seed" in params:
        kwargs["seed"] = seed
    if "patch_shape" in params:
        if patch_shape is None:
            raise ConfigError(f"learner {name!r} needs patch_shape=(height, width) of the party's image patch")
        kwargs["patch_shape"] = patch_shape
    return cls(**kwargs)
