"""Start-up time of the command line (pytest-benchmark): ``securegal [COMMAND] --help``.

Run: ``pytest benchmarks/test_cli_start.py --benchmark-only``. Each round is a fresh process,
as a user runs it. Target (issue 9): median of 5 under 0.5 s on a 2-core machine, for the top
level and for every command. Where the time goes: ``python -X importtime -c "import securegal.cli"``.
"""
import subprocess
import sys
from pathlib import Path

import pytest

from securegal.cli import COMMANDS

TARGET_SECONDS = 0.5
SCRIPT = Path(sys.executable).with_name("securegal")  # the installed console script
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "securegal.cli"]


def _argv(command: str) -> list[str]:
    nested = {"bench": ["crypto"], "party": ["serve"], "certs": ["init"]}
    return [command, *nested.get(command, [])]


@pytest.mark.parametrize("argv", [pytest.param([], id="securegal")] + [pytest.param(_argv(c), id=c) for c in COMMANDS])
def test_help_starts_fast(benchmark, argv):
    def run():
        subprocess.run([*COMMAND, *argv, "--help"], check=True, stdout=subprocess.DEVNULL)

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert benchmark.stats.stats.median < TARGET_SECONDS
