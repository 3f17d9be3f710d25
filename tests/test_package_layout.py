"""The package's own layout: every module imports, none is over 500 lines, nothing outside workspace.py spells a data/ path."""
from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import imagenet_clean

SRC = Path(imagenet_clean.__file__).parent
MAX_LINES = 500


def test_every_module_imports():
    failed = {}
    for m in pkgutil.walk_packages(imagenet_clean.__path__, "imagenet_clean."):
        try:
            importlib.import_module(m.name)
        except Exception as e:  # noqa: BLE001 - the point is to list every module that does not import
            failed[m.name] = f"{type(e).__name__}: {e}"
    assert not failed, failed


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (at most {MAX_LINES} lines): {long}"


def test_only_the_workspace_spells_project_paths():
    pattern = re.compile(r"""["'](data|metrics|reviews)/|/ ["'](data|metrics|reviews)["']""")
    allowed = {"workspace.py", "config.py"}  # config.py: params.yaml's defaults (generate.out, dataset.classes, dataset.truth)
    not_ours = ("timm.__file__", '"plots" / "metrics"')  # timm's own data folder; dvclive's plots/metrics layout
    hits = []
    for p in SRC.rglob("*.py"):
        if p.name in allowed:
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if (pattern.search(code) and '"""' not in line and not code.lstrip().startswith((">>>", "typer.echo"))
                    and not any(x in code for x in not_ours)):
                hits.append(f"{p.relative_to(SRC)}:{i}: {line.strip()}")
    assert not hits, "paths of the project belong to imagenet_clean.workspace.Workspace:\n" + "\n".join(hits)
