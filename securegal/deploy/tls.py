"""An organization's TLS settings (``[tls]`` of party.toml / federation.toml), checked against its name.

Its own module, light to import: Flower's per-message ClientApp process (a relay to the party
runtime, :mod:`securegal.deploy.flower.client_app`) needs it and nothing of the round loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..transport.certs import Identity
from . import config as schema


@dataclass(frozen=True)
class TlsConfig:
    identity: Identity | None
    insecure: bool

    @classmethod
    def build(cls, section: schema.TlsSection | None, name: str, where: str, base: Path,
              insecure_flag: bool = False) -> "TlsConfig":
        """``insecure_flag`` is the command line's ``--insecure``: it must not contradict the file."""
        if insecure_flag or (section is not None and section.insecure):
            if section is not None and not section.insecure:
                raise ConfigError(f"{where}: --insecure contradicts the [tls] cert/key/ca given; choose one")
            return cls(None, True)
        if section is None:
            raise ConfigError(f"{where}: missing [tls] (cert, key, ca), or pass --insecure for a loopback demo")
        ident = Identity.load(base / section.cert, base / section.key, base / section.ca)
        if ident.name != name:
            raise ConfigError(f"{where}: the certificate names organization {ident.name!r}, this config is {name!r}")
        return cls(ident, False)
