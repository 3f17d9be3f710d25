"""Options that several commands share, and loading the params and workspace they name."""
from __future__ import annotations

from pathlib import Path

import typer

PARAMS = typer.Option(Path("params.yaml"), "--params", help="The params file.")
ROUND = typer.Option(1, "--round", min=1, help="Cleaning round whose files to read and write "
                     "(1: data/ and metrics/; r >= 2: data/rounds/r/, metrics/rounds/r/).")
CAM = typer.Option(None, "--cam/--no-cam", help="Run the CAM exemption (default: params cam.enabled, else on).")
JOBS = typer.Option(1, "--jobs", min=0, help="cleanlab worker processes (0: all cores).")
WORKDIR = typer.Option(Path("."), "--workdir", help="The project folder (data/, reviews/, params.yaml).")


def load(params: Path, round: int = 1):
    """The validated params of ``params`` and the workspace of the current folder in ``round``.

    Raises:
        ValueError: ``round`` is beyond the params' ``rounds``.
    """
    from ..config import load_params
    from ..workspace import Workspace

    p = load_params(params)
    if round > p.rounds:
        raise ValueError(f"--round {round} is beyond rounds: {p.rounds} in {params}")
    return p, Workspace(Path("."), round)
