"""The tests' own layout: shared helpers live in support modules, never in ``test_*`` modules."""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_test_modules(path: Path) -> list[str]:
    """The ``test_*`` modules of tests/ that the file at ``path`` imports (anywhere in it, also inside functions)."""
    tests = {p.stem for p in TESTS.glob("test_*.py")}
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom):  # relative: "from . import test_x" / "from .test_x import y"
            names = [node.module] if node.module else [a.name for a in node.names]
        else:
            continue
        found += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in tests]
    return found


def test_no_test_module_imports_another_test_module():
    bad = {p.name: imported_test_modules(p) for p in sorted(TESTS.glob("*.py"))}
    bad = {name: hits for name, hits in bad.items() if hits}
    assert not bad, ("helpers shared between tests belong in a support module of tests/ whose name does not start "
                     f"with test_ (e.g. tests/stage_project.py), not in a test module: {bad}")
