"""securegal: privacy-hardened Gradient Assisted Learning across organizations.

``securegal.train`` is imported on first use, so that ``import securegal`` (and the command
line's ``--help``) stays fast: torch, TenSEAL and Opacus load only when a run needs them.
"""
from __future__ import annotations

__all__ = ["train"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "train":
        from .run import train

        return train
    raise AttributeError(f"module 'securegal' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
