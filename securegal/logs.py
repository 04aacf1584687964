"""One logging format for every securegal process: the CLI, a party and the label owner."""
from __future__ import annotations

import logging
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class UTCFormatter(logging.Formatter):
    """:data:`FORMAT` with UTC timestamps, so logs of parties in different time zones line up."""

    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__(FORMAT, DATE_FORMAT)


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr as ``2026-01-02T03:04:05Z INFO securegal.deploy.networked: message``: INFO and up with
    ``verbose``, else WARNING and up. Like :func:`logging.basicConfig`, it leaves a process whose
    root logger already has handlers (an embedding application, pytest) alone."""
    handler = logging.StreamHandler()
    handler.setFormatter(UTCFormatter())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
