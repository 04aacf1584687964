"""The large-block policy: mallopt is asked only once, and only for blocks above glibc's mmap
threshold ceiling."""
import platform

import numpy as np
import pytest

from securegal.core import memory


class _FakeLibc:
    """A C library whose mallopt records its calls (a function, so ctypes attributes can be set)."""

    def __init__(self, accept: bool):
        self.calls, self.accept = [], accept

        def mallopt(option, value):
            self.calls.append((option, value))
            return int(self.accept)
        self.mallopt = mallopt


@pytest.fixture
def fake_libc(monkeypatch):
    libc = _FakeLibc(accept=True)
    monkeypatch.setattr(memory, "_kept", False)
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: libc)
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: "libc.so.6")
    return libc


def test_small_blocks_leave_the_allocator_alone(fake_libc):
    assert memory.keep_large_blocks(memory.LARGE_BLOCK_BYTES) is False
    assert fake_libc.calls == []


def test_large_blocks_raise_both_thresholds_once(fake_libc):
    assert memory.keep_large_blocks(memory.LARGE_BLOCK_BYTES + 1) is True
    assert fake_libc.calls == [(-3, memory.KEEP_BYTES), (-1, memory.KEEP_BYTES)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    assert memory.keep_large_blocks(1 << 40) is True
    assert len(fake_libc.calls) == 2


def test_a_refused_setting_reports_off(fake_libc):
    fake_libc.accept = False
    assert memory.keep_large_blocks(1 << 30) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_glibc_accepts_the_setting_and_freed_blocks_are_reused(monkeypatch):
    """On glibc the setting takes, and a freed 64 MiB block comes back without page faults."""
    import resource

    monkeypatch.setattr(memory, "_kept", False)
    assert memory.keep_large_blocks(64 << 20) is True
    faults = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = np.empty(8 << 20)  # 64 MiB, above any mmap threshold glibc would pick itself
        block.fill(1.0)
        del block
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert faults[-1] < 100, faults  # fresh mappings would fault 16k pages (4 KiB) or 32 huge pages
