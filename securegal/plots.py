"""Plots written into run directories (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

from .files import private_open

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"gal": "GAL", "gal_uniform": "GAL (uniform w)", "alone": "Alone", "joint": "Joint"}


def plot_curves(metrics: dict, path: Path) -> None:
    """Test metric per round for GAL and any baselines in ``metrics``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in LABELS.items():
        if key in metrics:
            curve = metrics[key]["per_round"]
            ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)" if metrics["metric"] == "accuracy" else "test MAD")
    ax.set_title(f"{metrics['dataset']}, M={metrics['parties']}, {metrics['learner']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with private_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
