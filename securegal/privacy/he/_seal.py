"""HAZMAT: raw SEAL objects through ``tenseal.sealapi``. Nothing here checks who may hold what.

Use :mod:`securegal.privacy.he.keys` and :mod:`securegal.privacy.he.smoother` instead. This
module builds SEAL contexts, converts step counts to Galois elements and moves SEAL objects to
and from bytes. ``sealapi`` only saves to and loads from file paths, so bytes go through a
private (0700) directory, in memory (``/dev/shm``) where the system has one; each file is
removed as soon as it has been read.
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import uuid
from typing import Callable, Sequence

import tenseal.sealapi as sealapi

from ...errors import ProtocolError
from .params import CkksParams

_SCRATCH: str | None = None
# What sealapi raises on malformed input (pybind maps std::invalid_argument to ValueError,
# std::logic_error / std::runtime_error to RuntimeError, std::out_of_range to IndexError).
SEAL_ERRORS = (RuntimeError, ValueError, IndexError, TypeError)


def _scratch_dir() -> str:
    global _SCRATCH
    if _SCRATCH is None or not os.path.isdir(_SCRATCH):
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _SCRATCH = tempfile.mkdtemp(prefix="securegal-he-", dir=base)
        atexit.register(shutil.rmtree, _SCRATCH, True)
    return _SCRATCH


def _path() -> str:
    return os.path.join(_scratch_dir(), uuid.uuid4().hex)


def dump(obj) -> bytes:
    """Bytes of a SEAL object or ``Serializable`` (anything with ``save(path)``)."""
    path = _path()
    try:
        obj.save(path)
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        if os.path.exists(path):
            os.remove(path)


def load(data: bytes, loader: Callable[[str], None], what: str) -> None:
    """Feed ``data`` to ``loader(path)`` (e.g. ``lambda p: ct.load(ctx, p)``); SEAL's own
    validation failures become :class:`ProtocolError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, got {type(data).__name__}")
    path = _path()
    try:
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            loader(path)
        except SEAL_ERRORS as exc:
            raise ProtocolError(f"{what} is not valid for this context ({exc})") from None
    finally:
        os.remove(path)


def encryption_parameters(params: CkksParams) -> "sealapi.EncryptionParameters":
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(params.poly_modulus_degree)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(params.poly_modulus_degree, list(params.coeff_mod_bit_sizes)))
    return parms


@functools.lru_cache(maxsize=8)
def seal_context(params: CkksParams) -> "sealapi.SEALContext":
    """A SEAL context that SEAL itself also checks against 128-bit security. Made once per
    parameter set and process (its NTT tables are public precomputation, ~25 ms): the label
    owner and in-process parties of one session share it; keys are never part of it."""
    ctx = sealapi.SEALContext(encryption_parameters(params), True, sealapi.SEC_LEVEL_TYPE.TC128)
    if not ctx.parameters_set():
        raise ValueError(f"SEAL refused the parameters {params}: {ctx.parameters_error_message()}")
    return ctx


def galois_elements(ctx: "sealapi.SEALContext", steps: Sequence[int]) -> list[int]:
    """Galois elements for left rotations of the slot vector by ``steps``."""
    return list(ctx.key_context_data().galois_tool().get_elts_from_steps(list(steps)))


def conjugation_element(ctx: "sealapi.SEALContext") -> int:
    """The Galois element of complex conjugation of the slots (SEAL's step 0)."""
    return int(ctx.key_context_data().galois_tool().get_elt_from_step(0))


def parms_ids(ctx: "sealapi.SEALContext") -> list:
    """The parms_id of every data level, top (fresh ciphertexts) first."""
    ids, data = [], ctx.first_context_data()
    while data is not None:
        ids.append(data.parms_id())
        data = data.next_context_data()
    return ids
