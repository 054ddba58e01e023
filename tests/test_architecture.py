"""The shape of the code, checked: no import cycles, no private names across modules, the data path in
the folder names, and the light modules light (they import without torch)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("embedder", "embedder_ui")
STAGES = ("media", "models", "indexing", "jobs", "query", "store", "evaluation")

# Modules that parse queries, build filters, page results, hold page state or format text: importable
# without torch (the CLI answers at once; the pages draw before the model has loaded).
LIGHT = (
    "embedder.config", "embedder.paths", "embedder.terminal", "embedder.durable", "embedder.errors",
    "embedder.models", "embedder.models.ids", "embedder.models.vectors", "embedder.models.text_onnx",
    "embedder.engine",  # a search or `duplicates` from the CLI opens it before any model (or none at all)
    "embedder.query.terms", "embedder.query.filters", "embedder.query.pager", "embedder.query.searcher",
    "embedder.query.duplicates", "embedder.store.contract", "embedder.store.conditions", "embedder.store.schema",
    "embedder.evaluation.evaluate", "embedder_ui.pages.search_state", "embedder_ui.pages.search_url",
    "embedder_ui.format",
)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(module, names) for every import of our own modules in `path`, lazy ones included,
    `if TYPE_CHECKING:` blocks left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking(node) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [a.name for a in node.names]
            submodules = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in known]
            rest = [n for n in names if f"{node.module}.{n}" not in known]
            if node.module in known and (rest or not submodules):
                found.append((node.module, rest))
            found += [(m, []) for m in submodules]
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name in known]
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m, _ in imports(path, known) if m != name} for name, path in known.items()}


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            # A package's __init__ importing its own submodule is how a package is built, not a cycle.
            if state.get(nxt) == 1 and not nxt.startswith(node + "."):
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_no_private_name_is_imported_from_another_module() -> None:
    known = modules()
    crossing = [
        f"{name} imports {module}.{imported}"
        for name, path in known.items()
        for module, names in imports(path, known)
        for imported in names
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert crossing == []


def test_the_data_path_is_in_the_folder_names() -> None:
    loose = sorted(p.name for p in (ROOT / "embedder").glob("*.py"))
    assert len(loose) <= 10, loose
    packages = [p.name for p in (ROOT / "embedder").iterdir() if (p / "__init__.py").is_file()]
    assert set(STAGES) <= set(packages)


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_import_without_torch(module: str) -> None:
    heavy = ("torch", "transformers", "sentence_transformers", "streamlit")
    allowed = ("streamlit",) if module.startswith("embedder_ui") else ()
    code = (
        f"import sys, {module}\n"
        f"print(','.join(sorted(m for m in {heavy!r} if m in sys.modules and m not in {allowed!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
