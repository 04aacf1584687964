"""The exceptions securegal raises on purpose, and the one mapping to and from ``ErrorReply`` codes.

Every class is a ``ValueError`` or ``RuntimeError`` subclass so that generic callers keep working,
and every message names the bad value. Each class carries the ``code`` a party puts in its
``ErrorReply`` when it refuses a request for that reason:

===============  =========================  ==================================================
code             class                      meaning
===============  =========================  ==================================================
invalid          :class:`ConfigError`       a setting or input is invalid
protocol         :class:`ProtocolError`     a message is malformed, out of order or unexpected
layer_mismatch   :class:`LayerMismatch`     the two sides run different privacy layers
budget_exceeded  :class:`BudgetExceeded`    the release would overspend the privacy budget
policy           :class:`PolicyRefused`     the party's own policy forbids the request
unavailable      :class:`PartyUnavailable`  the party (or one it depends on) cannot answer
internal         :class:`InternalError`     an unexpected failure; details stay in its log
===============  =========================  ==================================================

A party turns an exception into a code with :func:`reply_code`; the label owner turns a received
``ErrorReply`` back into an exception with :func:`error_from_reply`, which is a
:class:`PartyRefused` *and* an instance of the code's class (``except BudgetExceeded`` catches a
party's refusal for budget as well as the label owner's own).
"""
from __future__ import annotations


class SecuregalError(Exception):
    """Base class of securegal's own errors."""

    code = "invalid"


class ConfigError(SecuregalError, ValueError):
    """A user-supplied setting or input file is invalid."""

    code = "invalid"


class ProtocolError(SecuregalError, ValueError):
    """An incoming message is malformed, oversized, out of order or from the wrong session."""

    code = "protocol"


class LayerMismatch(ProtocolError):
    """The label owner and a party run different privacy layers (e.g. CKKS residuals sent to a
    party that only accepts plaintext): a configuration mismatch found during the protocol."""

    code = "layer_mismatch"


class BudgetExceeded(SecuregalError, RuntimeError):
    """A release would spend more privacy budget than the party allows; nothing was released."""

    code = "budget_exceeded"


class PolicyRefused(SecuregalError, RuntimeError):
    """A party refuses a well-formed request because its own policy forbids it."""

    code = "policy"


class InsecureParameters(SecuregalError, ValueError):
    """Cryptographic parameters below the required security level."""

    code = "invalid"


class PartyUnavailable(SecuregalError, RuntimeError):
    """A party did not answer (timeout, connection refused, crashed)."""

    code = "unavailable"


class InternalError(SecuregalError, RuntimeError):
    """A party failed unexpectedly while handling a request; the details are in its own log."""

    code = "internal"


class PartyRefused(SecuregalError, RuntimeError):
    """A party answered with an error instead of a result.

    ``code`` is an ``ErrorReply`` code (see :data:`REPLY_CODES`) or, when the transport refused
    the call, the lower-case gRPC status name (e.g. ``permission_denied``).
    """

    def __init__(self, party: str, code: str, message: str):
        super().__init__(f"party {party!r} refused ({printable(code)}): {printable(message)}")
        self.party, self.code, self.message = party, code, message


def printable(text: str) -> str:
    """``text`` with every control character (escape sequences, carriage returns, newlines) written as
    its escape, so that text from a peer cannot redraw the operator's terminal or split a log line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# The one table of ErrorReply codes: code -> the class raised for it.
REPLY_CODES: dict[str, type[SecuregalError]] = {
    cls.code: cls for cls in (ConfigError, ProtocolError, LayerMismatch, BudgetExceeded, PolicyRefused,
                              PartyUnavailable, InternalError)
}


def reply_code(exc: BaseException) -> str:
    """The ``ErrorReply`` code for ``exc``: its class's code, or ``internal`` for anything that is
    not a securegal error (a bare ``ValueError`` or ``TypeError`` is a bug, not invalid input)."""
    return exc.code if isinstance(exc, SecuregalError) and exc.code in REPLY_CODES else "internal"


def _refusal_class(cls: type[SecuregalError]) -> type[PartyRefused]:
    return type(f"{cls.__name__}Reply", (PartyRefused, cls),
                {"__doc__": f"A party's refusal with code {cls.code!r}: both PartyRefused and {cls.__name__}.",
                 "__module__": __name__})


_REFUSALS: dict[str, type[PartyRefused]] = {code: _refusal_class(cls) for code, cls in REPLY_CODES.items()}


def error_from_reply(party: str, code: str, message: str) -> PartyRefused:
    """The exception for an ``ErrorReply`` from ``party``: a :class:`PartyRefused` that is also an
    instance of the code's class; an unknown code gives a plain :class:`PartyRefused`."""
    return _REFUSALS.get(code, PartyRefused)(party, code, message)
