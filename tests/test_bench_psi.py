"""``securegal bench psi``: the command's size parsing, the synthetic IDs, one small run."""
import argparse
from pathlib import Path

import pytest

from securegal.bench import psi
from securegal.commands.bench import _count
from securegal.errors import ConfigError


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

    out = tmp_path / "runs" / "psi.json"  # the README's --json runs/... on a fresh clone: runs/ is created
    assert main(["bench", "psi", "--sizes", "120", "--processes", "1", "--overlap", "0.25", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "matched" in printed and "120" in printed and out.is_file()
    assert main(["bench", "psi", "--sizes", "10", "--overlap", "1.5"]) == 2


def test_a_json_path_that_cannot_be_written_is_refused_before_measuring(tmp_path, capsys, monkeypatch):
    """`--json` into a directory failed only after the whole benchmark had run (review K)."""
    from securegal.cli import main

    monkeypatch.setattr(psi, "run", lambda *a, **k: pytest.fail("measured before the --json check"))
    (tmp_path / "file").write_text("x")
    for target, needle in ((tmp_path, "is a directory"), (tmp_path / "file" / "psi.json", "is not a directory"),
                           (Path("/proc/psi.json"), "cannot be written")):
        assert main(["bench", "psi", "--sizes", "10", "--json", str(target)]) == 2
        assert needle in capsys.readouterr().err
    assert main(["bench", "crypto", "--sizes", "64x2", "--json", str(tmp_path)]) == 2
    assert main(["bench", "crypto", "--sizes", "64x2", "--paillier-n", "100000"]) == 2
    assert "--paillier-n in 0..1024" in capsys.readouterr().err


def test_sizes_whose_reply_cannot_travel_are_refused_before_hashing():
    """16.8M IDs (the codec's point limit) never fit the 1 GiB message: they failed after all the
    hashing, or died of MemoryError as an internal error (review K)."""
    with pytest.raises(ConfigError, match=f"at most {psi.MAX_SIZE:,} IDs per side"):
        psi.run([10, psi.MAX_SIZE + 1], 1, 0.5)


@pytest.mark.parametrize("whole_group", [False, True])
def test_an_interrupt_stops_the_benchmark_and_everything_it_started(tmp_path, whole_group):
    """SIGINT to the command alone printed "interrupted" and then hung for good, its measuring
    process and workers running on; Ctrl-C (the whole process group) printed a traceback from a
    child first (review K)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "securegal.cli", "bench", "psi", "--sizes", "150k", "--processes", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})  # its own benchmark lock
    time.sleep(4)  # hashing has begun (about 40 s of work at this size)
    if whole_group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.monotonic() - interrupted < 10  # at once, not after the work
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and not line.startswith("PSI ")]
    assert lines == ["securegal: interrupted"], err[-2000:]
    for _ in range(50):  # multiprocessing's resource tracker exits once it sees its parent gone
        left = subprocess.run(["pgrep", "-a", "-s", str(proc.pid)], capture_output=True, text=True).stdout
        if not left:
            break
        time.sleep(0.1)
    assert left == ""  # nothing of the session runs on


def test_an_interrupt_while_the_measuring_process_starts_stops_it(monkeypatch):
    """Fresh-clone CI, once under load: Ctrl-C arrived while the measuring process was being
    started, outside the block that stops it; it ignores SIGINT, so it measured on and the
    command waited for it at exit (60 s) instead of stopping at once."""
    import multiprocessing
    import multiprocessing.context as context

    from securegal.bench import psi

    real = context.SpawnProcess.start

    def started_then_interrupted(self):
        real(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(context.SpawnProcess, "start", started_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        psi.run([150_000], 2, 0.5)
    assert multiprocessing.active_children() == []
