"""The line a party process prints on stdout once it serves, and how a launcher reads it."""
from __future__ import annotations

READY_TIMEOUT = 120.0  # seconds for a party process to load its data and listen


def ready_line(who: str, port: int, note: str = "") -> str:
    """``who`` (``party NAME`` or ``party runtime NAME``) serves on ``port``; ``note`` in brackets."""
    return f"{who} serving on port {port}" + (f" ({note})" if note else "")


def ready_port(line: str, who: str) -> int | None:
    """The port in ``who``'s ready line, or None if ``line`` is not one."""
    head = f"{who} serving on port "
    if not line.startswith(head):
        return None
    port = line[len(head):].split(maxsplit=1)
    return int(port[0]) if port and port[0].isdigit() else None
