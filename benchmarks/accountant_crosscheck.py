"""RDP, PRV and PLD against the exact epsilon of composed full-batch Gaussian releases.

    PYTHONPATH=. python benchmarks/accountant_crosscheck.py

T full-batch Gaussian releases with noise multiplier z are exactly one Gaussian mechanism with
multiplier s = z / sqrt(T); its epsilon at delta solves (Balle and Wang 2018)
delta = Phi(-eps s + 1/(2s)) - e^eps Phi(-eps s - 1/(2s)), computed here with scipy. Prints
two markdown tables: epsilon at delta = 1e-5 per accountant, and what calibrating the library's
default feature-party plan (gram x1, stat x10, pred x10) to epsilon with RDP really spends.
"""
from __future__ import annotations

import math
import time

from scipy.optimize import brentq
from scipy.special import log_ndtr

from securegal.privacy.dp.accountant import Release, calibrate_noise, epsilon_of
from securegal.privacy.dp.trainer import DPConfig, release_plan

DELTA = 1e-5
GRID = [(0.8, 1), (2.0, 1), (2.0, 10), (5.0, 1), (5.0, 10), (5.0, 50), (10.0, 10), (10.0, 50),
        (30.0, 3)]


def exact_epsilon(s: float, delta: float) -> float:
    """Epsilon of one Gaussian mechanism with noise multiplier ``s`` at ``delta``."""
    def log_delta(eps: float) -> float:
        a = log_ndtr(-eps * s + 1 / (2 * s))
        b = eps + log_ndtr(-eps * s - 1 / (2 * s))
        return a + math.log1p(-math.exp(b - a))

    hi = 1.0
    while log_delta(hi) > math.log(delta):
        hi *= 2.0
    return brentq(lambda e: log_delta(e) - math.log(delta), 1e-9, hi, xtol=1e-13)


def main() -> None:
    print(f"epsilon at delta = {DELTA:g} of T full-batch Gaussian releases with multiplier z\n")
    print("| z | T | exact (closed form) | PLD | PRV | RDP | RDP / exact |")
    print("|---|---|---|---|---|---|---|")
    for z, steps in GRID:
        rel = [Release(1, "f", z, 1.0, steps)]
        exact = exact_epsilon(z / math.sqrt(steps), DELTA)
        pld, prv, rdp = (epsilon_of(rel, DELTA, a) for a in ("pld", "prv", "rdp"))
        print(f"| {z:g} | {steps} | {exact:.4f} | {pld:.4f} | {prv:.4f} | {rdp:.4f} | "
              f"{rdp / exact:.3f} |")
    print("\nThe default DPConfig plan for T = 10 rounds (gram x1, stat x10, pred x10) calibrated to "
          "epsilon:\nwith RDP it really spends the exact epsilon shown; PLD calibrates to the budget\n")
    print("| epsilon | stat noise multiplier (RDP) | exact epsilon spent | stat noise multiplier (PLD) "
          "| PLD calibration, s |")
    print("|---|---|---|---|---|")
    for eps in (0.5, 1.0, 3.0, 8.0):
        config = DPConfig(eps, DELTA, feature_clip=0.5)  # noise multipliers do not depend on the clip
        plan = release_plan(config, 10)
        stat = next(p for p in plan if p.what == "stat")
        z_rdp = calibrate_noise(plan, config.budget, "rdp")
        precision = sum(p.steps / (z_rdp * p.scale) ** 2 for p in plan)
        exact = exact_epsilon(precision ** -0.5, DELTA)
        t = time.perf_counter()
        z_pld = calibrate_noise(plan, config.budget, "pld")
        seconds = time.perf_counter() - t
        print(f"| {eps:g} | {z_rdp * stat.scale:.2f} | {exact:.4f} | {z_pld * stat.scale:.2f} | "
              f"{seconds:.2f} |")

if __name__ == "__main__":
    main()
