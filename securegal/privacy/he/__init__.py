"""CKKS-encrypted residuals (TenSEAL / SEAL): the label owner's keys, the public context a
feature party receives, and the encrypted linear smoother a feature party runs."""
from .params import CkksParams
from .keys import PublicContext, SecretContext

__all__ = ["CkksParams", "PublicContext", "SecretContext"]
