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
    assert "docs/images/training_report.png" in links and "docs/api.md" in links
    missing = [link for link in links if not (REPO / link).exists()]
    assert missing == [], f"README links to files that do not exist: {missing!r}"


def test_nothing_links_outside_the_repository():
    texts = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    texts += sorted((REPO / "src").rglob("*.py"))
    outside = [
        str(p.relative_to(REPO)) for p in texts if "shared/docs" in p.read_text(encoding="utf-8")
    ]
    assert outside == [], f"these name shared/docs, which is not in the repository: {outside!r}"


def load_hook(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / "hooks" / f"{name}.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    return hook


def test_the_api_reference_lists_every_lazy_re_export():
    hook = load_hook("api_reference")
    assert hook.lazy_exports() == msc_response._LAZY
    page = hook.on_page_markdown(f"# API\n\n{hook.MARKER}\n", None, None, None)
    for name, module in msc_response._LAZY.items():
        assert f"::: {module}.{name}\n" in page and f"heading: msc_response.{name}\n" in page
    assert hook.MARKER not in page
    assert hook.on_page_markdown("no marker", None, None, None) == "no marker"


def doc_texts() -> dict[str, str]:
    """Each page's text, less the sections about where things used to be ("Where modules moved")."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    texts = {}
    for page in pages:
        sections = re.split(r"(?m)^(?=#+ )", page.read_text(encoding="utf-8"))
        kept = [s for s in sections if not re.match(r"#+ .*\b(moved|renamed)\b", s, re.IGNORECASE)]
        texts[str(page.relative_to(REPO))] = "".join(kept)
    return texts


# `src/...py`, `tests/test_x.py`, `benchmarks/...`, `examples/...`, `experiments/...`, `modeling/gate.py`
PATH = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|yaml|csv))(?:::(\w+))?`")
TEST_REF = re.compile(r"`(?:((?:\w+/)*test_\w+\.py))?::(test_\w+)`")
DOTTED = re.compile(r"\bmsc_response(?:\.\w+)+")
SRC = REPO / "src" / "msc_response"
GENERATED = {"outputs", "data", "reports", "mlruns", "site"}


def _tag_names() -> set[str]:
    """The ``msc_response.*`` MLflow tag names the code writes (string literals)."""
    found = set()
    for source in SRC.rglob("*.py"):
        found.update(
            re.findall(r"[\"'](msc_response(?:\.\w+)+)[\"']", source.read_text(encoding="utf-8"))
        )
    return found


def resolves(dotted: str) -> bool:
    """A module of the package, a name its module (or the lazy re-exports) defines, or an
    MLflow tag name the code writes."""
    if dotted in _tag_names():
        return True
    parts = dotted.split(".")[1:]
    base = SRC.joinpath(*parts)
    if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
        return True
    if len(parts) == 1:
        return parts[0] in msc_response.__all__
    parent = SRC.joinpath(*parts[:-1])
    for source in (parent.with_suffix(".py"), parent / "__init__.py"):
        if source.exists() and re.search(rf"\b{parts[-1]}\b", source.read_text(encoding="utf-8")):
            return True
    return False


def test_files_tests_and_modules_named_in_the_docs_exist():
    """Paths, test names and module names in the pages exist (they move with the code)."""
    tests_by_name = {p.name: p for p in (REPO / "tests").rglob("test_*.py")}
    missing = []
    for page, text in doc_texts().items():
        for path, _ in PATH.findall(text):
            if path.startswith(("src/", "tests/", "benchmarks/", "examples/", "experiments/")):
                found = (REPO / path).exists()
            elif Path(path).name.startswith("test_") and not path.startswith("src/"):
                found = Path(path).name in tests_by_name
            elif path.split("/")[0] in GENERATED:
                continue  # written by make demo, never committed
            elif "/" in path:  # a module path inside the package, e.g. modeling/gate.py
                found = (SRC / path).exists() or (SRC.parent / path).exists()
            else:
                continue  # a file name in prose (FILE.csv, index.py)
            if not found:
                missing.append((page, path))
        current = None
        for file, test in TEST_REF.findall(text):
            current = file or current
            source = tests_by_name.get(Path(current).name) if current else None
            if source is None or f"def {test}(" not in source.read_text(encoding="utf-8"):
                missing.append((page, f"{current}::{test}"))
        missing += [(page, name) for name in DOTTED.findall(text) if not resolves(name)]
    assert missing == [], f"named in the docs but not found: {missing!r}"


def test_sphinx_roles_in_docstrings_become_the_code_a_reader_types():
    as_code = load_hook("sphinx_roles").as_code
    text = ":func:`~msc_response.study.load_study` reads, :class:`msc_response.Study` holds"
    assert as_code(text) == "`load_study` reads, `msc_response.Study` holds"
    assert as_code("see :data:`NO_INTERVAL` (``1.96``)") == "see `NO_INTERVAL` (``1.96``)"
    assert as_code("no role here: `x`") == "no role here: `x`"
