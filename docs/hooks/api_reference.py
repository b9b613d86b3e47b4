"""MkDocs hook: the API reference of the names ``msc_response`` re-exports lazily.

``msc_response/__init__.py`` imports its public names on first use (``_LAZY``: name ->
defining module), so static analysis (griffe) cannot see them as members of the package.
This hook reads that table from the source, without importing the package, and writes one
mkdocstrings block per name, headed with the top-level name a user types
(``msc_response.load_config``), documented from its defining module. The table stays the
one place that says where a name lives: when a module moves, the reference follows.
"""

from __future__ import annotations

import ast
from pathlib import Path

MARKER = "<!-- api: lazy re-exports -->"
INIT = Path(__file__).resolve().parents[2] / "src" / "msc_response" / "__init__.py"


def lazy_exports(init: Path = INIT) -> dict[str, str]:
    """``_LAZY`` of the package's ``__init__.py``, read with ``ast`` (nothing imported)."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "_LAZY":
            table = ast.literal_eval(node.value)
            if not isinstance(table, dict) or not table:
                raise ValueError(f"{init}: _LAZY is not a non-empty dict: {table!r}")
            return table
    raise ValueError(f"{init}: no _LAZY table of lazy re-exports found")


def blocks(table: dict[str, str]) -> str:
    """One mkdocstrings block per re-exported name, in the table's order."""
    out = []
    for name, module in table.items():
        out.append(
            f"::: {module}.{name}\n"
            f"    options:\n"
            f"      heading: msc_response.{name}\n"
            f"      toc_label: {name}\n"
        )
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, blocks(lazy_exports()))
