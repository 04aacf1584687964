"""The registry of privacy layers: the one list that the CLI, the deployments, the audit sweep,
the benchmarks and the contract suite enumerate.

A layer is a named way to build a :class:`~securegal.privacy.plan.PrivacyPlan`. Adding a layer
is one entry here; nothing else re-decides which channel or trainer applies.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .plan import FeatureDP, LabelDP, PrivacyPlan


@dataclass(frozen=True)
class Layer:
    """One registered layer.

    ``budget``: which epsilon the layer needs (``None``, ``"feature"`` or ``"label"``).
    ``noising``: its outputs differ from plain GAL's (DP noise), so it cannot match plain results.
    Which learners it runs is the plan's to say (:meth:`PrivacyPlan.check_learner`).
    """

    name: str
    summary: str
    residuals: str
    budget: str | None
    noising: bool

    def plan(self, epsilon: float | None = None, **options) -> PrivacyPlan:
        """This layer's plan; DP layers need ``epsilon`` and take :class:`FeatureDP`/:class:`LabelDP` options."""
        if self.budget is None:
            if epsilon is not None or options:
                raise ConfigError(f"layer {self.name!r} takes no DP budget or options")
            return PrivacyPlan(residuals=self.residuals)
        if epsilon is None:
            raise ConfigError(f"layer {self.name!r} needs an epsilon")
        if self.budget == "feature":
            return PrivacyPlan(residuals=self.residuals, feature_dp=FeatureDP(epsilon=epsilon, **options))
        return PrivacyPlan(residuals=self.residuals, label_dp=LabelDP(epsilon=epsilon, **options))


LAYERS: dict[str, Layer] = {layer.name: layer for layer in (
    Layer("plain", "no protection: residuals and predictions in the clear", "plain", None, noising=False),
    Layer("ckks", "labels: residuals CKKS-encrypted under the label owner's key", "ckks", None, noising=False),
    Layer("dp", "features: each party's releases (epsilon, delta)-DP per row", "plain", "feature", noising=True),
    Layer("ckks+dp", "both: CKKS residuals, DP ridge with homomorphic noise", "ckks", "feature", noising=True),
    Layer("label-dp", "labels: clipped, noised residuals (label-DP), for learners CKKS cannot run", "plain",
          "label", noising=True),
)}


def layer(name: str) -> Layer:
    """The registered layer ``name``, or a ConfigError listing the registered ones."""
    if not isinstance(name, str):
        raise ConfigError(f"a privacy layer is named by a string, got {name!r}")
    found = LAYERS.get(name) or LAYERS.get(name.strip().lower())
    if found is None:
        raise ConfigError(f"unknown privacy layer {name!r}; registered: {', '.join(LAYERS)}")
    return found
