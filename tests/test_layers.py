"""The package's layers (docs/architecture.md): each imports only the ones below it, no circles.

Read from the source with ``ast``, so the test sees every import, run or not. Imports
under ``if __name__ == "__main__":`` are a script's, not the module's, and are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import msc_response

PACKAGE = Path(msc_response.__file__).parent

#: Lowest first; a module may import its own layer and the ones before it.
LAYERS = [
    (
        "msc_response",
        "errors",
        "units",
        "plausible",
        "confidence",
        "domain",
        "scores",
        "labels",
        "feature_labels",
        "progress",
        "provenance",
        "config",
    ),  # fmt: skip
    ("io", "processes", "tracking", "server"),
    ("plotting",),
    ("study",),
    ("importers",),
    ("simulator",),
    ("features",),
    ("modeling",),
    ("registry",),
    ("reporting",),
    ("pipelines",),
    ("cli",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
#: Allowed by rank, yet not theirs: models and pages know nothing of MLflow.
FORBIDDEN = {"modeling": {"tracking"}, "reporting": {"tracking"}}
NO_MLFLOW = ("modeling", "reporting", "features", "study")
#: The word a function-level project import's comment must hold (a deferred heavy import).
MARKER = "deferred"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").is_file() or (
        PACKAGE.parent / rel / "__init__.py"
    ).is_file()


def _is_main_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
    )


def _imports(path: Path):
    """(imported module, line, inside a function, the node) for every import of ``path``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if _is_main_block(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, child, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(base + ([child.module] if child.module else []))
                else:
                    base = child.module
                for alias in child.names:
                    name = f"{base}.{alias.name}"
                    found.append((name if _exists(name) else base, child, in_function))
            else:
                fn = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                visit(child, in_function or fn)

    visit(ast.parse(path.read_text()), False)
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {_module_name(p): _imports(p) for p in SOURCES}


def test_every_module_has_a_layer():
    assert {_layer(m) for m in GRAPH} <= set(RANK), sorted({_layer(m) for m in GRAPH} - set(RANK))


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_run_down_the_layers(module):
    up = []
    for target, node, _ in GRAPH[module]:
        if target.split(".")[0] != "msc_response":
            continue
        mine, theirs = _layer(module), _layer(target)
        if RANK[theirs] > RANK[mine] or theirs in FORBIDDEN.get(mine, ()):
            up.append(f"line {node.lineno}: {mine} imports {target}")
    assert not up, up


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _layer(m) in NO_MLFLOW))
def test_no_mlflow_below_the_registry(module):
    hits = [n.lineno for t, n, _ in GRAPH[module] if t.split(".")[0] == "mlflow"]
    assert not hits, f"{module} imports mlflow at lines {hits}"


def test_function_level_project_imports_say_why():
    unmarked = []
    for path in SOURCES:
        lines = path.read_text().splitlines()
        for target, node, in_function in _imports(path):
            if not in_function or target.split(".")[0] != "msc_response":
                continue
            # the comment is on the import, or above the block of imports it opens
            first = node.lineno - 1
            while first > 0 and lines[first - 1].strip().startswith(("from ", "import ", "#")):
                first -= 1
            if not any(MARKER in line for line in lines[first : node.end_lineno]):
                unmarked.append(f"{_module_name(path)}:{node.lineno} imports {target}")
    assert not unmarked, unmarked


def test_no_import_cycles():
    edges = {
        m: {t for t, _, fn in imports if not fn and t in GRAPH and t != m}
        for m, imports in GRAPH.items()
    }
    # a package's module imports its package's __init__ implicitly; that is not a cycle
    done, on_path, cycles = set(), [], []

    def visit(m):
        if m in on_path:
            cycles.append(on_path[on_path.index(m) :] + [m])
            return
        if m in done:
            return
        on_path.append(m)
        for t in sorted(edges[m]):
            visit(t)
        on_path.pop()
        done.add(m)

    for m in sorted(edges):
        visit(m)
    assert not cycles, cycles
