"""Differential privacy for securegal: releases, accountants, mechanisms and DP learners."""
from .accountant import (
    ACCOUNTANTS,
    DEFAULT_ACCOUNTANT,
    Budget,
    PlannedRelease,
    PrivacyAccountant,
    Release,
    calibrate_noise,
    scales_for_shares,
)

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ACCOUNTANT",
    "Budget",
    "PlannedRelease",
    "PrivacyAccountant",
    "Release",
    "calibrate_noise",
    "scales_for_shares",
]
