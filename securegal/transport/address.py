"""``host:port`` addresses: the one parser every deployment and transport uses."""

from __future__ import annotations

from ..errors import ConfigError


def split_address(address: str, what: str = "address", *, any_port: bool = False) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` or ``[v6]:port``; ConfigError naming ``what`` otherwise.

    The port is 1..65535, or 0..65535 with ``any_port`` (0: the system picks a free port)."""
    lowest = 0 if any_port else 1
    host, sep, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not sep or not host or not port.isdigit() or not lowest <= int(port) <= 65535:
        raise ConfigError(f"{what} must be host:port with a port in {lowest}..65535, got {address!r}")
    return (host[1:-1] if host.startswith("[") and host.endswith("]") else host), int(port)
