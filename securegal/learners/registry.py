"""Build a local learner by name: ``make_learner("mlp", local_loss="l1", seed=3)``."""
from __future__ import annotations

import inspect

from ..errors import ConfigError
from .cnn import CNNLearner
from .gb import GBLearner
from .linear import LinearLearner
from .mlp import MLPLearner
from .rff import RFFLearner

LEARNERS = {
    "linear": LinearLearner,
    "mlp": MLPLearner,
    "cnn": CNNLearner,
    "gb": GBLearner,
    "rff": RFFLearner,
}


def make_learner(name: str, *, local_loss: str = "l2", seed: int = 0, patch_shape=None, **options):
    """A learner of kind ``name`` (one of :data:`LEARNERS`) with its own ``options``.

    ``seed`` is passed to learners that use randomness (linear ridge has none);
    ``patch_shape`` (height, width) is required by ``cnn``; the other learners see the flattened
    pixels as plain features and ignore it.
    """
    if name not in LEARNERS:
        raise ConfigError(f"unknown learner {name!r}; choose one of {', '.join(LEARNERS)}")
    cls = LEARNERS[name]
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
