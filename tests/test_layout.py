"""Layout (issue 11): no import cycles among embedlab's modules — function-level imports
count, type-checking-only imports do not — and each shared helper is defined once."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "embedlab"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for sub in ast.walk(node)
    }
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("embedlab"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in mods else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("embedlab")}
    return {m for m in out if m in mods}


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(p, mods) for m, p in mods.items()}
    # A package's __init__ may import its own submodules (that is what it is for).
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_shared_helpers_are_defined_once():
    helpers = ("unit_rows", "class_means", "top_k_cosine", "principal_directions")
    where = {h: [] for h in helpers}
    for p in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name in where:
                where[node.name].append(p.relative_to(SRC).as_posix())
    assert where == {h: ["embedlab/core/vectors.py"] for h in helpers}


def test_removed_aliases_are_gone_and_announced():
    """Deprecated aliases are removed, and the changelog says what replaces them."""
    import importlib

    import pytest

    from embedlab.detect import MaxCosineDetector
    from embedlab.models.openset import OpenSetClassifier

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("embedlab.space")
    assert not hasattr(MaxCosineDetector(), "score_samples")
    assert not hasattr(OpenSetClassifier(), "score_samples")
    changes = (Path(__file__).resolve().parents[1] / "CHANGELOG.md").read_text(encoding="utf-8")
    removed = changes.split("### Removed", 1)[1].split("###", 1)[0]
    assert "`embedlab.space`" in removed and "`score_samples`" in removed


#: Functions over 80 lines and modules over 600 lines today, with their sizes: they may
#: shrink (lower the number, or drop the entry) but not grow, and no other may join them
#: (issue 25 asks for none at all; this keeps the way there one-directional).
LONG_FUNCTIONS = {}
LONG_MODULES = {
    "models/pipeline.py": 481,
    "cli/model.py": 236,
}


def _body_lines(node: ast.AST) -> int:
    """A function's body in lines, its docstring and signature left out."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def test_long_functions_and_modules_only_shrink():
    root = Path(__file__).resolve().parents[1] / "src" / "embedlab"
    grown = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        n_lines = len(text.splitlines())
        if n_lines > LONG_MODULES.get(rel, 600):
            grown.append(f"{rel}: {n_lines} lines (limit {LONG_MODULES.get(rel, 600)})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = LONG_FUNCTIONS.get((rel, node.name), 80)
                if _body_lines(node) > limit:
                    grown.append(f"{rel}:{node.name}: {_body_lines(node)} lines (limit {limit})")
    assert not grown, "split these instead of growing them: " + "; ".join(grown)
