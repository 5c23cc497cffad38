"""One command line: `procseq` is the only entry point of the package. No module under src/procseq imports argparse
or has an ``if __name__ == "__main__"`` block; experiment drivers live in experiments/ (read with ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "procseq"

ALLOWED = {
    "cli/__main__.py",  # `python -m procseq.cli`: the one command line
}


def is_main_block(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    consts = {s.value for s in sides if isinstance(s, ast.Constant)}
    return "__name__" in names and "__main__" in consts


def offences(source: str) -> list[str]:
    """What makes a module's `source` a second command line: an argparse import or a ``__main__`` block."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "argparse" for a in node.names):
            found.append(f"imports argparse (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "argparse":
            found.append(f"imports argparse (line {node.lineno})")
    found += [f"has a __main__ block (line {n.lineno})" for n in tree.body if is_main_block(n)]
    return found


def test_no_module_has_its_own_command_line() -> None:
    bad = {rel: found for p in sorted(PACKAGE.rglob("*.py"))
           if (rel := p.relative_to(PACKAGE).as_posix()) not in ALLOWED and (found := offences(p.read_text()))}
    assert bad == {}, "move the driver to experiments/ or make it a procseq subcommand"


def test_the_check_sees_each_kind() -> None:
    assert len(offences("import argparse\nif '__main__' == __name__:\n    pass\n")) == 2
    assert offences("def main():\n    from argparse import ArgumentParser\n")  # function-local imports count
    assert offences("if __name__ == '__main__':\n    main()\n")
    assert offences("import sys\nif __name__ == 'procseq':\n    pass\n") == []


def test_experiment_drivers_live_outside_the_package() -> None:
    drivers = {p.stem for p in (ROOT / "experiments").glob("*.py")}
    assert {"known_frames", "last_frame", "regional", "adaptive", "adaptive_repair", "adaptive_calibration",
            "adapters", "domain", "frame_by_frame", "memory_check"} <= drivers
    readme = (ROOT / "experiments" / "README.md").read_text()
    missing = sorted(p.name for p in (ROOT / "experiments").iterdir()
                     if p.suffix in (".py", ".sh") and p.stem not in ("__init__", "common") and p.name not in readme)
    assert missing == [], "experiments/README.md: one line per script"
