"""The registry of privacy layers: the one list that the CLI, the deployments, the audit sweep,
the benchmarks and the contract suite enumerate.

A layer is a named way to build a :class:`~securegal.privacy.plan.PrivacyPlan`. Adding a layer
is one entry here; nothing else re-decides which channel or trainer applies.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .plan import CKKS_DP_LEARNERS, CKKS_LEARNERS, DP_LEARNERS, FeatureDP, LabelDP, PrivacyPlan


@dataclass(frozen=True)
class Layer:
    """One registered layer.

    ``budget``: which epsilon the layer needs (``None``, ``"feature"`` or ``"label"``).
    ``noising``: its outputs differ from plain GAL's (DP noise), so it cannot match plain results.
    ``classification_only``: label-DP has no accounted regression version.
    """

    name: str
    summary: str
    residuals: str
    budget: str | None
    learners: tuple[str, ...]
    noising: bool
    classification_only: bool = False

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
    Layer("plain", "no protection: residuals and predictions in the clear", "plain", None,
          ("linear", "rff", "mlp", "cnn", "gb"), noising=False),
    Layer("ckks", "labels: residuals CKKS-encrypted under the label owner's key", "ckks", None,
          CKKS_LEARNERS, noising=False),
    Layer("dp", "features: each party's releases (epsilon, delta)-DP per row", "plain", "feature",
          DP_LEARNERS, noising=True),
    Layer("ckks+dp", "both: CKKS residuals, DP ridge with homomorphic noise", "ckks", "feature",
          CKKS_DP_LEARNERS, noising=True),
    Layer("label-dp", "labels: clipped, noised residuals (label-DP), for learners CKKS cannot run", "plain",
          "label", ("linear", "rff", "mlp", "cnn", "gb"), noising=True, classification_only=True),
)}


def layer(name: str) -> Layer:
    """The registered layer ``name``, or a ConfigError listing the registered ones."""
    if not isinstance(name, str):
        raise ConfigError(f"a privacy layer is named by a string, got {name!r}")
    found = LAYERS.get(name) or LAYERS.get(name.strip().lower())
    if found is None:
        raise ConfigError(f"unknown privacy layer {name!r}; registered: {', '.join(LAYERS)}")
    return found
