"""securegal on Flower's deployment engine (``pip install securegal[flower]``).

The label owner runs as a Flower ``ServerApp`` (:mod:`.server_app`), each feature party as a
``ClientApp`` (:mod:`.client_app`). securegal's own codec bytes travel inside Flower records
(:mod:`.records`), so validation, transcripts and the audit are the same as in the embedded and
gRPC deployments; Flower is the transport and the runtime, not a second message format.

flwr is imported only by the modules of this package, never by the rest of securegal.
"""
from __future__ import annotations

from ...errors import ConfigError


def require_flwr():
    """The ``flwr`` module, or a ConfigError saying how to install it."""
    try:
        import flwr
    except ImportError:
        raise ConfigError("the Flower deployment needs flwr: pip install 'securegal[flower]'") from None
    return flwr
