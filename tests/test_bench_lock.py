import os
import subprocess
import sys

from securegal.bench.lock import lock_path, one_benchmark_at_a_time

WAITER = """
import sys
from securegal.bench.lock import one_benchmark_at_a_time
with one_benchmark_at_a_time(sys.argv[1]):
    print("ran", flush=True)
"""


def test_a_second_benchmark_waits_for_the_first_and_names_it(tmp_path):
    path = tmp_path / "bench.lock"
    with one_benchmark_at_a_time(path):
        waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        said = waiter.stderr.readline()  # blocks until the waiter finds the lock taken
        assert f"waiting for another benchmark (pid {os.getpid()}, lock {path}) to finish" in said
        assert waiter.poll() is None
    out, err = waiter.communicate(timeout=60)
    assert (waiter.returncode, out, err) == (0, "ran\n", "")
    assert path.read_text() == str(waiter.pid)  # the holder's pid, for the next one to name


def test_the_lock_is_one_file_in_the_temporary_directory_and_the_tests_hold_their_own():
    import tempfile
    from pathlib import Path

    from securegal.bench import lock

    assert lock_path() == Path(tempfile.gettempdir()) / f"securegal-bench-{os.getuid()}.lock"  # before the patch
    assert lock.lock_path() != lock_path()  # conftest: the tests' bench runs lock their own file


def test_a_lock_path_that_is_a_link_or_unwritable_is_refused_in_one_line(tmp_path):
    import pytest

    from securegal.errors import ConfigError

    (tmp_path / "victim").write_text("keep me")
    (tmp_path / "bench.lock").symlink_to(tmp_path / "victim")
    with pytest.raises(ConfigError, match="cannot open the benchmark lock .*bench.lock: Too many levels of symbolic links"):
        with one_benchmark_at_a_time(tmp_path / "bench.lock"):
            pass
    assert (tmp_path / "victim").read_text() == "keep me"


def test_a_lock_path_that_is_not_a_regular_file_is_refused_in_one_line(tmp_path):
    """Verifier G: a FIFO at the lock path was an internal error."""
    import pytest

    from securegal.errors import ConfigError

    os.mkfifo(tmp_path / "bench.lock")
    with pytest.raises(ConfigError, match="bench.lock is not a regular file; remove it"):
        with one_benchmark_at_a_time(tmp_path / "bench.lock"):
            pass
