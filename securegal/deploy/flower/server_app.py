"""The label owner as a Flower ``ServerApp``.

Run config keys (``[tool.flwr.app.config]`` or ``flwr run --run-config``):

- ``federation``: path of the label owner's ``federation.toml`` (data, rounds, seed, plan, out);
- ``supernode-keys`` (optional): a directory of ``<party>.pub``, each party's SuperNode
  authentication public key; with it, a node must sign its claimed party name with that key;
- ``overwrite`` (optional, default false): replace the label owner's earlier results in the
  federation's ``out``, which are refused otherwise (as ``securegal train --federation`` without
  ``--overwrite``);
- ``party-configs``: read by the ClientApp (simulation engine only).

Any other key is refused (ConfigError), never ignored; ``resume`` with the reason in
:data:`REFUSED_RUN_CONFIG`.
"""
from __future__ import annotations

from pathlib import Path

from . import require_flwr

require_flwr()
from flwr.app import Context  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402

from ...errors import ConfigError  # noqa: E402
from .deployment import load_federation, train_on_flower  # noqa: E402


RUN_CONFIG_KEYS = frozenset({"federation", "supernode-keys", "overwrite", "party-configs"})
# Run config keys the Flower deployment cannot honour, and why.
REFUSED_RUN_CONFIG = {
    "resume": "the Flower deployment cannot resume a run. Every flwr run is a new Flower run: under the "
              "simulation engine the parties' state lives only as long as its run, and continuing a "
              "checkpointed session through a SuperLink is not implemented. Start the run again, or run the "
              "federation over gRPC (securegal train --federation, which resumes with --resume)",
}


def check_run_config(run_config) -> None:
    """ConfigError for a run config key this app does not honour (see :data:`REFUSED_RUN_CONFIG`)."""
    for key in sorted(run_config):
        if key in REFUSED_RUN_CONFIG:
            raise ConfigError(f"run config {key!r}: {REFUSED_RUN_CONFIG[key]}")
        if key not in RUN_CONFIG_KEYS:
            raise ConfigError(f"unknown run config key {key!r}; the securegal app reads {sorted(RUN_CONFIG_KEYS)}")
    if not isinstance(run_config.get("overwrite", False), bool):
        raise ConfigError(f"run config 'overwrite' must be true or false, got {run_config['overwrite']!r}")


def make_server_app(federation: str | Path | None = None, keys_dir: str | Path | None = None) -> ServerApp:
    """A ServerApp for ``federation`` (default: the run config's ``federation``)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        check_run_config(context.run_config)
        path = federation or context.run_config.get("federation")
        if not path:
            raise ConfigError("the securegal ServerApp needs run config 'federation' (path of federation.toml)")
        keys = keys_dir or context.run_config.get("supernode-keys") or None
        train_on_flower(load_federation(str(path)), grid, keys_dir=keys,
                        overwrite=context.run_config.get("overwrite", False))

    return app


app = make_server_app()
