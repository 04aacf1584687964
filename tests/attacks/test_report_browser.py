"""audit.html in a real headless browser (Debian's chromium): it renders, and the verdicts show.

Run: ``apt-get install -y chromium`` (or set ``SECUREGAL_CHROMIUM`` to a Chromium/Chrome
binary), then ``.venv/bin/python -m pytest tests/attacks/test_report_browser.py -q``. Without a
browser the test is skipped and says why.
"""
import os
import shutil
import subprocess

import numpy as np
import pytest

from securegal.attacks import audit
from securegal.run import train

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str | None:
    explicit = os.environ.get("SECUREGAL_CHROMIUM")
    if explicit:
        return explicit
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _browser(binary, profile, *args, timeout=120):
    return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          timeout=timeout, check=True)


@pytest.fixture(scope="module")
def chromium():
    binary = _chromium()
    if binary is None:
        pytest.skip("no headless browser: install Debian's chromium (apt-get install -y chromium) "
                    "or set SECUREGAL_CHROMIUM")
    return binary


def test_audit_html_renders_with_verdicts(chromium, tmp_path):
    run_dir = tmp_path / "run"
    train("wine", parties=3, rounds=3, seed=0, out=run_dir, ground_truth=True)
    audit.audit_run(run_dir, steps=20)
    page = (run_dir / "audit.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    _browser(chromium, tmp_path / "profile1", "--window-size=1200,1600", f"--screenshot={shot}", page)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    ink = np.mean(pixels.min(axis=2) < 0.9)  # share of pixels that are not (near) white
    assert 0.01 < ink < 0.9, f"screenshot looks blank or broken (ink {ink:.3f})"
    assert np.any(np.abs(pixels[..., 0] - pixels[..., 1]) > 0.2), "no coloured verdict cells or plot marks"
    dom = _browser(chromium, tmp_path / "profile2", "--dump-dom", page).stdout.decode()
    assert "LEAKS" in dom and "Decision rule" in dom and "data:image/png;base64," in dom
