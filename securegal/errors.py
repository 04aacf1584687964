"""The small set of exceptions securegal raises on purpose."""
from __future__ import annotations


class SecuregalError(Exception):
    """Base class of every error securegal raises deliberately."""


class BudgetExceeded(SecuregalError):
    """A release was refused because it would take a party past its (epsilon, delta) budget.

    The accountant's state is unchanged when this is raised.
    """
