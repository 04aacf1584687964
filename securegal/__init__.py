"""securegal: privacy-hardened Gradient Assisted Learning across organizations."""

__all__ = ["train"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use: worker processes (securegal.align) must not pay for torch.
    if name == "train":
        from .run import train

        return train
    raise AttributeError(f"module 'securegal' has no attribute {name!r}")
