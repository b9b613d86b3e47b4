"""The study report renders in a real browser: every image loads, no console error, not blank."""

from __future__ import annotations

import numpy as np
import pytest

from browser_helpers import render
from msc_response import simulate
from msc_response.config import config_from_dict
from msc_response.reporting.build import write_study_report

pytestmark = pytest.mark.slow


def test_study_report_renders_in_headless_chromium(tmp_path):
    study = simulate("trial", seed=5)
    page = write_study_report(config_from_dict({"name": "cp-browser"}), study, tmp_path / "report")
    seen = render(page, tmp_path / "screenshot.png")
    assert len(seen.images) >= 8
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in seen.images), seen.images
    assert seen.errors == [], seen.errors
    assert seen.text_length > 5000 and seen.title.startswith("SIMULATED")
    from PIL import Image

    pixels = np.asarray(Image.open(seen.screenshot).convert("L"))
    assert pixels.std() > 20  # not a blank page: text, tables and figures


def test_a_broken_image_and_a_script_error_are_seen(tmp_path):
    # the check above can fail: a missing image and a console error are reported
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><body><p>x</p><img src='missing.png'><script>console.error('boom')</script></body></html>"
    )
    seen = render(page, tmp_path / "bad.png")
    assert seen.images[0]["naturalWidth"] == 0
    assert any("boom" in e["message"] for e in seen.errors)
