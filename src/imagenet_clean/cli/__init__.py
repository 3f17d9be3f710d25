"""The ``imagenet-clean`` command line: one module per command group.

Commands only parse, check and call the library. Known errors become one line
on stderr and exit code 1; set ``IMAGENET_CLEAN_TRACEBACK=1`` (or pass
``--traceback`` first) for the full traceback.
"""
from __future__ import annotations

import os
import sys

import typer

from . import clean, data, evaluate, explain, models, publish, release, review, rounds, setup, train

app = typer.Typer(
    name="imagenet-clean",
    help="Clean ImageNet-style datasets by confident learning, top-5 consensus and CAM explainability.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _group in (setup, data, train, models, clean, explain, evaluate, rounds, publish, release, review):
    _group.register(app)


def _known_errors() -> tuple[type[BaseException], ...]:
    from ..config import ConfigError
    from ..io import OutputError

    return (ConfigError, OutputError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError, KeyError)


def _relaunch(argv: list[str], *, traceback: bool) -> None:
    """Replace this process by ``$IMAGENET_CLEAN_LAUNCHER -m imagenet_clean argv`` when it applies (see models.distributed)."""
    from ..models.distributed import LAUNCHER_ENV, relaunch_command

    cmd = relaunch_command(argv, os.environ)
    if cmd is None:
        return
    print(f"imagenet-clean: {LAUNCHER_ENV}: running {' '.join(cmd)}", file=sys.stderr)
    env = {**os.environ, **({"IMAGENET_CLEAN_TRACEBACK": "1"} if traceback else {})}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(cmd[0], cmd, env)  # the launcher gets this process's signals (DVC's Ctrl-C) and exit code
    except OSError as e:
        raise ValueError(f"{LAUNCHER_ENV}: cannot run {cmd[0]!r}: {e.strerror or e}") from None


def _sweep_project() -> None:
    """Remove what killed runs' atomic writes left in the project's output folders (``data/``, ``metrics/``).

    Every stage also sweeps its own output folders (``leftovers.py``); this
    catches the commands that write elsewhere in the project. ``data/raw`` is
    ``generate``'s, which replaces it as a whole and sweeps beside it.
    """
    from ..leftovers import sweep_temporaries
    from ..workspace import Workspace

    ws = Workspace()
    data = ws.data
    folders = [ws.metrics]
    if data.is_dir() and not data.is_symlink():
        folders += [p for p in data.iterdir() if p.is_dir() and not p.is_symlink() and p != ws.raw]
        sweep_temporaries(data, recursive=False)
    sweep_temporaries(*[f for f in folders if f.is_dir()])


def main(argv: list[str] | None = None) -> None:
    """Console entry point; under ``IMAGENET_CLEAN_LAUNCHER`` the distributed commands re-execute under the launcher."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_tb = os.environ.get("IMAGENET_CLEAN_TRACEBACK") == "1"
    if argv[:1] == ["--traceback"]:
        argv, show_tb = argv[1:], True
    try:
        _relaunch(argv, traceback=show_tb)
        _sweep_project()
        app(args=argv, prog_name="imagenet-clean")
    except _known_errors() as e:
        if show_tb:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"imagenet-clean: error: {msg}", file=sys.stderr)
        sys.exit(1)
