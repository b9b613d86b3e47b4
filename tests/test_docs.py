"""The README's links and the API reference's list of names (the site itself is checked by
``mkdocs build --strict`` in ``make docs``, which ``make test`` runs)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import msc_response

REPO = Path(__file__).resolve().parents[1]
# [text](target) with a relative target, optionally with an anchor
LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)(?:#[^)\s]*)?\)")


def relative_links(markdown: str) -> list[str]:
    return LINK.findall(markdown)


def test_relative_links_are_found_and_the_readme_links_resolve():
    assert relative_links("[a](docs/x.md) [b](https://x.org/y.md) [c](#top) [d](LICENSE#l1)") == [
        "docs/x.md",
        "LICENSE",
    ]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = relative_links(readme)
    assert "docs/images/report.png" in links and "docs/api.md" in links
    missing = [link for link in links if not (REPO / link).exists()]
    assert missing == [], f"README links to files that do not exist: {missing!r}"


def test_nothing_links_outside_the_repository():
    texts = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    texts += sorted((REPO / "src").rglob("*.py"))
    outside = [
        str(p.relative_to(REPO)) for p in texts if "shared/docs" in p.read_text(encoding="utf-8")
    ]
    assert outside == [], f"these name shared/docs, which is not in the repository: {outside!r}"


def test_the_api_reference_lists_every_lazy_re_export():
    spec = importlib.util.spec_from_file_location(
        "api_reference", REPO / "docs" / "hooks" / "api_reference.py"
    )
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    assert hook.lazy_exports() == msc_response._LAZY
    page = hook.on_page_markdown(f"# API\n\n{hook.MARKER}\n", None, None, None)
    for name, module in msc_response._LAZY.items():
        assert f"::: {module}.{name}\n" in page and f"heading: msc_response.{name}\n" in page
    assert hook.MARKER not in page
    assert hook.on_page_markdown("no marker", None, None, None) == "no marker"
