"""Build a local learner by name: ``make_learner("mlp", local_loss="l1", seed=3)``."""
from __future__ import annotations

import importlib
import inspect

from ..errors import ConfigError

# name -> (module, class). Imported on first use: the torch learners (mlp, cnn) cost seconds
# and a few hundred MiB to import, which a linear run never needs.
LEARNERS = {
    "linear": ("securegal.learners.linear", "LinearLearner"),
    "mlp": ("securegal.learners.mlp", "MLPLearner"),
    "cnn": ("securegal.learners.cnn", "CNNLearner"),
    "gb": ("securegal.learners.gb", "GBLearner"),
    "rff": ("securegal.learners.rff", "RFFLearner"),
}


def learner_class(name: str) -> type:
    """The learner class registered as ``name``."""
    if name not in LEARNERS:
        raise ConfigError(f"unknown learner {name!r}; choose one of {', '.join(LEARNERS)}")
    module, cls = LEARNERS[name]
    return getattr(importlib.import_module(module), cls)


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
