"""Make the source tree's top-level ``attacks/`` importable as ``securegal.attacks`` in tests.

An installed distribution maps it there with setuptools' package-dir (see attacks/README.md);
from a bare checkout with ``PYTHONPATH=.`` this registers the same mapping by hand.
"""
import importlib.util
import pathlib
import sys

import securegal

_ATTACKS = pathlib.Path(__file__).resolve().parent / "attacks"

if "securegal.attacks" not in sys.modules and _ATTACKS.is_dir():
    try:
        import securegal.attacks  # noqa: F401  (installed: nothing to do)
    except ModuleNotFoundError:
        spec = importlib.util.spec_from_file_location(
            "securegal.attacks", _ATTACKS / "__init__.py", submodule_search_locations=[str(_ATTACKS)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["securegal.attacks"] = module
        spec.loader.exec_module(module)
        securegal.attacks = module
