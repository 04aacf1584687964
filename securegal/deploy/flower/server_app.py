"""The label owner as a Flower ``ServerApp``.

Run config keys (``[tool.flwr.app.config]`` or ``flwr run --run-config``):

- ``federation``: path of the label owner's ``federation.toml`` (data, rounds, seed, plan, out);
- ``supernode-keys`` (optional): a directory of ``<party>.pub``, each party's SuperNode
  authentication public key; with it, a node must sign its claimed party name with that key.
"""
from __future__ import annotations

from pathlib import Path

from . import require_flwr

require_flwr()
from flwr.app import Context  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402

from ...errors import ConfigError  # noqa: E402
from .deployment import load_federation, train_on_flower  # noqa: E402


def make_server_app(federation: str | Path | None = None, keys_dir: str | Path | None = None) -> ServerApp:
    """A ServerApp for ``federation`` (default: the run config's ``federation``)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        path = federation or context.run_config.get("federation")
        if not path:
            raise ConfigError("the securegal ServerApp needs run config 'federation' (path of federation.toml)")
        keys = keys_dir or context.run_config.get("supernode-keys") or None
        train_on_flower(load_federation(str(path)), grid, keys_dir=keys)

    return app


app = make_server_app()
