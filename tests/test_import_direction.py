"""Imports point one way. Each rule: modules under a package must not import the listed ones.
(The parties may use the transport's ``Transport`` protocol in transport/base.py, nothing else.)

Read from the source with ``ast`` (nothing is imported), so a forbidden arrow fails here even
when it sits in a function body.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The layers, lowest first: a module may import its own layer and those below it. The one arrow
# upward is the networked deployment calling ``securegal.run.train`` (deploy/networked.py, inside
# a function), the same entry point the embedded deployment is run through.
LAYERS = (
    ("securegal/errors.py", "securegal/files.py", "securegal/logs.py", "securegal/messages.py", "securegal/metrics.py",
     "securegal/summary.py"),
    ("securegal/core",),
    ("securegal/seam.py", "securegal/plots.py", "securegal/wire"),
    ("securegal/transcript.py", "securegal/align"),
    ("securegal/data",),
    ("securegal/learners",),
    ("securegal/privacy", "securegal/transport"),
    ("securegal/parties",),
    ("securegal/deploy",),
    ("securegal/run.py", "securegal/bench"),
    ("securegal/experiments",),
    ("securegal/commands", "securegal/cli.py", "securegal/__init__.py"),
)
UPWARD = {("securegal/deploy", "securegal.run")}


def _module(place: str) -> str:
    return place.removesuffix(".py").replace("/", ".")


def _above(level: int) -> tuple[str, ...]:
    return tuple(_module(place) for higher in LAYERS[level + 1:] for place in higher)


RULES = {place: tuple(m for m in _above(level) if (place, m) not in UPWARD)
         for level, places in enumerate(LAYERS) for place in places if place != "securegal/__init__.py"}
# Beside the layers: privacy and transport do not import each other, nor the parties' learners
# the transport; attacks read transcripts only.
RULES["securegal/transport"] += ("securegal.privacy", "securegal.learners", "securegal.data", "securegal.align")
RULES["securegal/privacy"] += ("securegal.transport",)
RULES["securegal/parties"] += ("securegal.privacy", "securegal.transport.grpc_client", "securegal.transport.grpc_server",
                               "securegal.transport.inprocess")
RULES["securegal/bench"] += ("securegal.deploy", "securegal.parties")
RULES["attacks"] = ("securegal.privacy", "securegal.parties", "securegal.learners", "securegal.deploy", "securegal.run",
                    "securegal.experiments", "securegal.commands", "securegal.bench", "securegal.transport",
                    "securegal.cli")


def _imports(path: Path, source: str | None = None) -> set[str]:
    """Absolute module names ``path`` (or ``source`` as if it stood there) imports, relative
    imports resolved against its package."""
    package = list(path.relative_to(ROOT).with_suffix("").parts)
    if package[0] == "attacks":
        package = ["securegal", *package]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8") if source is None else source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def test_every_module_is_in_a_layer():
    placed = {p for places in LAYERS for p in places} | {"attacks"}
    missing = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "securegal").glob("*"))
               if (path.suffix == ".py" or (path.is_dir() and path.name != "__pycache__"))
               and str(path.relative_to(ROOT)) not in placed]
    assert not missing, f"not in a layer of tests/test_import_direction.py: {missing}"


@pytest.mark.parametrize("folder", sorted(RULES))
def test_imports_point_one_way(folder):
    bad = []
    where = ROOT / folder
    for path in sorted(where.rglob("*.py") if where.is_dir() else [where]):
        for name in _imports(path):
            for forbidden in RULES[folder]:
                if name == forbidden or name.startswith(forbidden + "."):
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_rule_catches_a_forbidden_arrow():
    probe = ROOT / "securegal" / "core" / "probe.py"  # never written: the source is given
    found = _imports(probe, "def f():\n    from ..parties import label_owner\n")
    assert "securegal.parties" in found and "securegal.parties" in RULES["securegal/core"]


def test_flwr_is_imported_only_by_the_flower_deployment():
    """The core install does not pull flwr (it is the [flower] extra): only securegal/deploy/flower uses it."""
    flower = ROOT / "securegal" / "deploy" / "flower"
    bad = [f"{path.relative_to(ROOT)} imports {name}"
           for folder in ("securegal", "attacks") for path in sorted((ROOT / folder).rglob("*.py"))
           if flower not in path.parents
           for name in _imports(path) if name == "flwr" or name.startswith("flwr.")]
    assert not bad, "\n".join(bad)
