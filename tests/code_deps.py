"""The package modules a dvc.yaml stage's command runs, found by reading imports (support for test_dvc_yaml.py).

A stage's command ``imagenet-clean <command>`` runs the console entry point
(``cli/__init__.py`` and what it imports, ``cli/options.py``), the command's CLI
module and its stage module under ``stages/``; from there every ``import`` of a
package module counts, top-level or inside a function (lazy imports are how this
package defers heavy ones), followed transitively.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "imagenet_clean"


def module_file(name: str) -> Path | None:
    """The source file of a package module (``imagenet_clean.x.y``), or None when it is not one."""
    base = SRC.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _package_of(name: str) -> str:
    f = module_file(name)
    return name if f is not None and f.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str, tree: ast.AST, *, top_level: bool = False) -> set[str]:
    """Package modules imported by the statements of ``tree`` (module ``name``'s source); ``top_level``: only module-level ones."""
    out: set[str] = set()
    nodes = tree.body if top_level else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name).split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] == PKG and module_file(t) is not None:
                parts = t.split(".")
                out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    out.discard(name)
    return out


@lru_cache(maxsize=None)
def direct_imports(name: str) -> frozenset[str]:
    """Package modules that module ``name`` imports anywhere in its source (and their parent packages)."""
    return frozenset(_imports(name, ast.parse(module_file(name).read_text())))


def entry_modules(command_module: str, command_function: str) -> set[str]:
    """What running one CLI command executes before its library code: the entry point and the command's own body.

    ``cli/__init__.py`` imports every command group at module level (whose module
    level imports only typer and ``cli/options.py``), runs ``_relaunch`` and
    ``_known_errors`` for every command, and every stage command loads its params
    with :func:`imagenet_clean.cli.options.load`; of the command's own module only
    ``command_function``'s body runs.
    """
    cli = f"{PKG}.cli"
    init = ast.parse(module_file(cli).read_text())
    out = {cli} | _imports(cli, init, top_level=True)
    for group in [m for m in list(out) if m.startswith(cli + ".")]:
        out |= _imports(group, ast.parse(module_file(group).read_text()), top_level=True)
    for fn in ("_relaunch", "_known_errors"):
        out |= _imports(cli, _function(init, fn))
    opts = f"{cli}.options"
    out |= _imports(opts, _function(ast.parse(module_file(opts).read_text()), "load"))
    out |= _imports(command_module, _function(ast.parse(module_file(command_module).read_text()), command_function))
    return out


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise KeyError(f"no function {name!r}")


def stage_modules(command_module: str, command_function: str) -> set[str]:
    """Every package module a command runs: :func:`entry_modules`, then the library modules they import, transitively.

    The entry point's and the command's modules contribute only the code that runs;
    library modules contribute every import, lazy ones included.
    """
    entry = entry_modules(command_module, command_function)
    shallow = {m for m in entry if m == f"{PKG}.cli" or m.startswith(f"{PKG}.cli.")}
    return shallow | closure(sorted(entry - shallow))


def closure(roots: list[str]) -> set[str]:
    """Every package module that ``roots`` import, transitively, with the roots."""
    seen, todo = set(), list(roots)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(direct_imports(m) - seen)
    return seen


def relpath(name: str) -> str:
    """A module's source file relative to the repository root, as dvc.yaml spells deps."""
    return module_file(name).relative_to(SRC.parent).as_posix()


def covered(path: str, deps: list[str]) -> bool:
    """Whether a source file is one of ``deps`` or lies under a folder of them."""
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


FOLDER_DEPS = ("cleanup", "cli", "data", "evaluate", "models", "publish", "review")
"""Packages a stage may name as one folder dep; ``stages/`` and the top-level modules are named file by file."""


def minimal_deps(modules: set[str], *, min_files: int = 4) -> list[str]:
    """Code deps that cover ``modules``: a library package's folder when ``min_files`` or more of its files run, else the files."""
    files = sorted(relpath(m) for m in modules)
    by_folder: dict[str, list[str]] = {}
    for f in files:
        parts = f.split("/")
        key = "/".join(parts[:3]) if len(parts) > 3 and parts[2] in FOLDER_DEPS else f
        by_folder.setdefault(key, []).append(f)
    out = []
    for key, fs in sorted(by_folder.items()):
        out.extend([key] if len(fs) >= min_files or key == "src/imagenet_clean/cli" else fs)
    return sorted(out)


def command_of(cmd: str) -> str:
    """The ``imagenet-clean`` command a dvc.yaml ``cmd`` runs (``imagenet-clean clean --split x`` -> ``clean``)."""
    words = cmd.split()
    if words[:1] != ["imagenet-clean"] or len(words) < 2:
        raise ValueError(f"not an imagenet-clean command: {cmd!r}")
    return words[1]


def command_callbacks() -> dict[str, tuple[str, str]]:
    """``{command: (module, function)}`` of the ``imagenet-clean`` CLI."""
    from imagenet_clean.cli import app

    return {c.name: (c.callback.__module__, c.callback.__name__) for c in app.registered_commands}


def stage_code_deps(cmd: str) -> list[str]:
    """The code deps a stage running ``cmd`` must list (:func:`minimal_deps` of :func:`stage_modules`)."""
    return minimal_deps(stage_modules(*command_callbacks()[command_of(cmd)]))


def rewrite_dvc_yaml(path: Path) -> None:
    """Replace every stage's ``src/`` deps in dvc.yaml by :func:`stage_code_deps` (comments and other lines kept)."""
    import yaml

    stages = yaml.safe_load(path.read_text())["stages"]
    lines = path.read_text().split("\n")
    out, i = [], 0
    current = None
    while i < len(lines):
        line = lines[i]
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            current = line.strip()[:-1]
        out.append(line)
        if current in stages and line.strip() == "deps:":
            indent = line[: len(line) - len(line.lstrip())] + "  "
            i += 1
            while i < len(lines) and lines[i].startswith(indent + "- "):
                if not lines[i].strip().startswith("- src/"):
                    out.append(lines[i])
                i += 1
            st = stages[current]
            cmd = (st.get("do") or st)["cmd"]
            out.extend(f"{indent}- {d}" for d in stage_code_deps(cmd))
            continue
        i += 1
    path.write_text("\n".join(out))


if __name__ == "__main__":  # python tests/code_deps.py: rewrite dvc.yaml's code deps from the imports
    rewrite_dvc_yaml(Path(__file__).resolve().parents[1] / "dvc.yaml")
