"""Package list for setuptools (everything else is in pyproject.toml).

``attacks/`` lives at the top level of the repository but installs as ``securegal.attacks``,
so ``securegal audit`` finds it after a plain ``pip install`` and no generic top-level
``attacks`` module lands in site-packages. See attacks/README.md.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["securegal", "securegal.*"]) + ["securegal.attacks"],
    package_dir={"securegal.attacks": "attacks"},
)
