"""One logging format for every securegal process: the CLI, a party and the label owner."""
from __future__ import annotations

import logging
import sys
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr as ``2026-01-02T03:04:05Z INFO securegal.network: message`` (UTC);
    INFO and up with ``verbose``, else WARNING and up. Replaces earlier handlers of the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(FORMAT, DATE_FORMAT)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
