"""CKKS-encrypted residuals (TenSEAL / SEAL): the label owner's keys, the public context a
feature party receives, the encrypted linear smoother it runs, and both sides of the seam.

Safe API: :class:`CkksParams`, :class:`SecretContext`, :class:`PublicContext`,
:class:`EncryptedSmoother`, :class:`CkksResiduals`, :class:`CkksTrainer`. The ``_seal`` and
``_packing`` modules are the raw (hazmat) layer under them.
"""
from .keys import PublicContext, SecretContext
from .layers import CkksResiduals, CkksTrainer, ckks_trainers
from .params import CkksParams
from .smoother import EncryptedSmoother

__all__ = ["CkksParams", "CkksResiduals", "CkksTrainer", "EncryptedSmoother", "PublicContext", "SecretContext",
           "ckks_trainers"]
