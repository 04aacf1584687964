"""``securegal bench crypto``: correct at every size, ratios to Paillier, bounded inputs."""
import argparse

import pytest

from securegal.bench import crypto
from securegal.commands.bench import _size
from securegal.errors import ConfigError


@pytest.mark.parametrize("n", [2, 3, 100, 1000, 4095, 4097])
def test_ckks_bench_is_correct_below_and_above_one_ciphertext(n, secret_context, public_context):
    """Below the slot count the residuals must be encrypted in the smoother's layout (they used
    to be encrypted without it, and the check on the decrypted result failed for every n < 4096)."""
    row = crypto.bench_ckks(n, 4, repeats=1, secret=secret_context, public=public_context)
    assert row.scheme == "ckks" and row.n == n and row.rotations > 0
    assert row.party_seconds > 0 and row.owner_encrypt_seconds > 0 and row.owner_decrypt_seconds > 0
    chunks = -(-n // public_context.slots)
    assert row.bytes_to_party > 0 and row.bytes_to_owner > 0 and chunks == (2 if n > 4096 else 1)


def _row(scheme, enc, party, cpu, dec, n=100, p=4):
    return crypto.Row(n, p, scheme, party, cpu, enc, dec, 1, 1)


def test_ratios_compare_each_row_with_paillier_on_the_whole_job_and_the_party_alone():
    rows = [_row("plain", 0.0, 0.001, 0.001, 0.0), _row("ckks", 0.01, 0.03, 0.02, 0.01),
            _row("paillier_full", 2.0, 3.0, 2.0, 1.0), _row("ckks", 0.01, 0.03, 0.02, 0.01, n=200)]
    by_row = crypto.ratios(rows)
    assert by_row[(100, 4, "ckks")] == pytest.approx((6.0 / 0.05, 2.0 / 0.02))
    assert by_row[(100, 4, "paillier_full")] == pytest.approx((1.0, 1.0))
    assert (200, 4, "ckks") not in by_row  # no Paillier row at that size
    assert crypto.job_speedups(rows) == {"100x4": pytest.approx(120.0)}
    assert crypto.speedups(rows) == {"100x4": pytest.approx(100.0)}
    text = crypto.table(rows)
    assert "job vs P" in text and "party vs P" in text and "columns:" in text
    assert "whole job (encrypt + party + decrypt) 120x faster" in text


@pytest.mark.parametrize("n,p", [(10**7, 8), (4096, 1000), (2**20, 8), (1, 8), (8, 1)])
def test_sizes_are_bounded_with_a_one_line_error(n, p):
    with pytest.raises(ConfigError, match=f"{n}x{p}") as caught:
        crypto.check_size(n, p)
    assert "\n" not in str(caught.value)
    with pytest.raises(argparse.ArgumentTypeError):
        _size(f"{n}x{p}")
    with pytest.raises(ConfigError):
        crypto.run([(n, p)], repeats=1, paillier_n=0)


def test_cli_size_parsing():
    assert _size("4096x8") == (4096, 8)
    with pytest.raises(argparse.ArgumentTypeError, match="NxP"):
        _size("4096")


def test_run_without_paillier_prints_rows_and_legend(secret_context):
    rows = crypto.run([(50, 3)], repeats=1, paillier_n=0, secret=secret_context)
    assert [r.scheme for r in rows] == ["plain", "ckks"]
    text = crypto.table(rows)
    assert text.count("\n     50   3 ") == 2 and text.rstrip().endswith("scaled linearly in n")
