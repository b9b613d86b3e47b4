"""Screenshots of the three pages a reader opens, for the documentation: ``make screenshots``.

Takes the newest training report and validation page of an experiment under ``reports/``
and an explain page, opens each in headless Chromium (the tests' driver:
``tests/browser_helpers.py``), checks that every image loaded and the console has no
error, and writes the top of each page to ``docs/images/`` (palette-compressed, small enough
to commit for the README; regenerated from the SIMULATED demo data):

- ``docs/images/training_report.png``
- ``docs/images/validation.png``
- ``docs/images/explain.png``

Usage: ``python docs/screenshots.py EXPERIMENT EXPLAIN_PAGE`` (the Makefile passes them).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path.cwd()  # the project folder: ``make`` runs it there
OUT = ROOT / "docs" / "images"
TESTS = Path(__file__).resolve().parents[1] / "tests"
#: The part of each page shown: its top, at a laptop's width.
WIDTH, HEIGHT = 1280, 1100


def newest(pattern: str) -> Path:
    pages = sorted((ROOT / "reports").glob(pattern), key=lambda p: p.stat().st_mtime)
    if not pages:
        raise SystemExit(
            f"screenshots: no page matches reports/{pattern}; run `make train` (and validate) first"
        )
    return pages[-1]


def shoot(page: Path, name: str) -> Path:
    """The top of ``page`` as ``docs/images/<name>.png``; the page must render cleanly."""
    sys.path.insert(0, str(TESTS))
    from PIL import Image

    from browser_helpers import render

    with tempfile.TemporaryDirectory() as tmp:
        seen = render(page, Path(tmp) / "full.png")
        broken = [i for i in seen.images if not (i["complete"] and i["naturalWidth"] > 0)]
        if broken or seen.errors:
            raise SystemExit(
                f"screenshots: {page} does not render cleanly: {broken or seen.errors}"
            )
        with Image.open(seen.screenshot) as full:
            top = full.crop((0, 0, min(WIDTH, full.width), min(HEIGHT, full.height)))
            OUT.mkdir(parents=True, exist_ok=True)
            target = OUT / f"{name}.png"
            partial = target.with_name(f".{target.name}.{os.getpid()}")
            # 128 colours keep a page's text sharp at a fraction of the size
            top.convert("RGB").quantize(colors=128).save(partial, format="PNG", optimize=True)
            os.replace(partial, target)  # a reader never sees half an image
    return target


def main(experiment: str, explain_page: str) -> None:
    training = [p for p in (ROOT / "reports" / experiment).glob("*/index.html")
                if not p.parent.name.startswith("validation-")]  # fmt: skip
    if not training:
        raise SystemExit(
            f"screenshots: no training report under reports/{experiment}; run `make train`"
        )
    pages = {
        "training_report": max(training, key=lambda p: p.stat().st_mtime),
        "validation": newest(f"{experiment}/validation/*/index.html"),
        "explain": Path(explain_page),
    }
    for name, page in pages.items():
        print(f"{name}: {page.relative_to(ROOT) if page.is_relative_to(ROOT) else page} -> "
              f"{shoot(page, name).relative_to(ROOT)}")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
