"""Imports flow one way, down DESIGN.md's layers (decision 17), and form no circle: every import counts, the ones
inside functions and under ``TYPE_CHECKING`` included (read with ``ast``, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "procseq"

LAYERS: dict[str, int] = {
    # base helpers
    **dict.fromkeys(["layout", "sequence", "images", "outputs", "machine", "quiet", "distributed", "domain_prompt",
                     "jsonio", "limits", "cards", "endpoint", "progress", "sheet", "lazy"], 0),
    **dict.fromkeys(["data", "models", "attention", "adapters"], 1),
    "conditioning": 2,
    **dict.fromkeys(["planning", "layouts"], 3),
    "pipelines": 4,
    **dict.fromkeys(["batch", "tutorial"], 5),
    **dict.fromkeys(["training", "eval"], 6),
    "cli": 7,
}
"""Each top-level part of the package and its layer: a module may import its own layer and the ones below."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package (the shipped model folder's ``pipeline.py`` is data, not a module)."""
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "embedded" not in p.parts}


def imports(path: Path, known: set[str]) -> set[str]:
    """The procseq modules `path` imports: ``from procseq.a import b`` is ``procseq.a.b`` when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("procseq.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("procseq."):
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs or {node.module}
    return found & known


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, known) - {name} for name, path in mods.items() if name != "procseq"}


def layer(module: str) -> int:
    part = module.split(".")[1]
    assert part in LAYERS, f"{module}: add its part to LAYERS (DESIGN.md decision 17 names every layer)"
    return LAYERS[part]


def test_every_import_goes_down_the_layers() -> None:
    upward = sorted(f"{a} -> {b}" for a, bs in graph().items() for b in bs if layer(b) > layer(a))
    assert upward == []


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `g` (its strongly connected components of more than one module; Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_the_checks_catch_what_they_look_for() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    g = graph()
    assert "procseq.models.loading" in g["procseq.pipelines.loading"]  # function-local and module imports read
    assert layer("procseq.cli.generate") > layer("procseq.layouts.sampling") > layer("procseq.layout")


def test_no_import_circles() -> None:
    assert circles(graph()) == []
