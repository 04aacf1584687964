"""``securegal bench psi``: the command's size parsing, the synthetic IDs, one small run."""
import argparse

import pytest

from securegal.bench import psi
from securegal.commands.bench import _count


def test_sizes_accept_plain_underscore_and_suffix_forms():
    assert [_count(t) for t in ("10000", "100k", "1M", "1_000_000")] == [10_000, 100_000, 1_000_000, 1_000_000]
    for bad in ("0", "-5", "ten", "1.5k"):
        with pytest.raises(argparse.ArgumentTypeError):
            _count(bad)


def test_synthetic_ids_overlap_as_asked():
    owner, party = psi.make_ids(1000, 0.8, seed=1)
    assert len(set(owner)) == len(set(party)) == 1000
    assert len(set(owner) & set(party)) == 800
    assert owner[0].startswith("MRN-")


def test_one_small_run_reports_time_memory_and_the_right_matching():
    row = psi.run_one(300, processes=1, overlap=0.5, bar=False)
    assert row.matched == row.expected == 150
    assert row.seconds > 0 and row.cpu_seconds > 0 and row.total_peak_mib >= row.process_peak_mib > 10
    assert "300" in psi.table([row])


def test_the_command_runs_each_size_in_a_fresh_process(tmp_path, capsys):
    from securegal.cli import main

    out = tmp_path / "psi.json"
    assert main(["bench", "psi", "--sizes", "120", "--processes", "1", "--overlap", "0.25", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "matched" in printed and "120" in printed and out.is_file()
    assert main(["bench", "psi", "--sizes", "10", "--overlap", "1.5"]) == 2
