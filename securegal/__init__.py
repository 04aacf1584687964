"""securegal: privacy-hardened Gradient Assisted Learning across organizations."""
from .run import train

__all__ = ["train"]
__version__ = "0.1.0"
