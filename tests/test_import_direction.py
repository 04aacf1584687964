"""Imports point one way. Each rule: modules under a package must not import the listed ones.
(The parties may use the transport's ``Transport`` protocol in transport/base.py, nothing else.)

Read from the source with ``ast`` (nothing is imported), so a forbidden arrow fails here even
when it sits in a function body.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RULES = {
    "securegal/core": ("securegal.learners", "securegal.privacy", "securegal.parties", "securegal.transport",
                       "securegal.deploy"),
    "securegal/transport": ("securegal.parties", "securegal.privacy", "securegal.deploy"),
    "securegal/learners": ("securegal.parties", "securegal.privacy", "securegal.deploy", "securegal.transport"),
    "securegal/parties": ("securegal.privacy", "securegal.deploy", "securegal.transport.grpc_client",
                          "securegal.transport.grpc_server", "securegal.transport.inprocess"),
    "securegal/privacy": ("securegal.parties", "securegal.deploy", "securegal.transport"),
    "attacks": ("securegal.privacy", "securegal.parties", "securegal.learners", "securegal.deploy",
                "securegal.run", "securegal.experiments"),
}


def _imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved against its package)."""
    package = list(path.relative_to(ROOT).with_suffix("").parts)
    if package[0] == "attacks":
        package = ["securegal", *package]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


@pytest.mark.parametrize("folder", sorted(RULES))
def test_imports_point_one_way(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in _imports(path):
            for forbidden in RULES[folder]:
                if name == forbidden or name.startswith(forbidden + "."):
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_rule_catches_a_forbidden_arrow(tmp_path):
    probe = ROOT / "securegal" / "core" / "_probe_for_test.py"
    probe.write_text("from ..parties import label_owner\n")
    try:
        assert "securegal.parties" in _imports(probe)
    finally:
        probe.unlink()


def test_flwr_is_imported_only_by_the_flower_deployment():
    """The core install does not pull flwr (it is the [flower] extra): only securegal/deploy/flower uses it."""
    flower = ROOT / "securegal" / "deploy" / "flower"
    bad = [f"{path.relative_to(ROOT)} imports {name}"
           for folder in ("securegal", "attacks") for path in sorted((ROOT / folder).rglob("*.py"))
           if flower not in path.parents
           for name in _imports(path) if name == "flwr" or name.startswith("flwr.")]
    assert not bad, "\n".join(bad)
