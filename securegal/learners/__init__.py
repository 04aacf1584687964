"""Local learners: each party's model fitted to the residuals on its own features."""
from .registry import LEARNERS, make_learner

__all__ = ["LEARNERS", "make_learner"]
