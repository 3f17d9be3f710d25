"""The ``imagenet-clean`` command line: one module per command group.

Commands only parse, check and call the library. Known errors become one line
on stderr and exit code 1; set ``IMAGENET_CLEAN_TRACEBACK=1`` (or pass
``--traceback`` first) for the full traceback.
"""
from __future__ import annotations

import os
import sys

import typer

from . import clean, data, evaluate, models, publish, setup, train

app = typer.Typer(
    name="imagenet-clean",
    help="Clean ImageNet-style datasets by confident learning, top-5 consensus and CAM explainability.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _group in (setup, data, train, models, clean, evaluate, publish):
    _group.register(app)


def _known_errors() -> tuple[type[BaseException], ...]:
    from ..config import ConfigError
    from ..io import OutputError

    return (ConfigError, OutputError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError, KeyError)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_tb = os.environ.get("IMAGENET_CLEAN_TRACEBACK") == "1"
    if argv[:1] == ["--traceback"]:
        argv, show_tb = argv[1:], True
    try:
        app(args=argv, prog_name="imagenet-clean")
    except _known_errors() as e:
        if show_tb:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"imagenet-clean: error: {msg}", file=sys.stderr)
        sys.exit(1)
