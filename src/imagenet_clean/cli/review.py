"""`imagenet-clean` commands of the review group: ``review`` (the web app), ``review-metrics`` (metrics/review.json)
and ``tune`` (thresholds from the reviews)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .options import PARAMS, WORKDIR


def review(
    split: str = typer.Option("val", "--split", help="The split whose changes to review (train, val or v2)."),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="The port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="The address to bind; anything but loopback prints an access token."),
    workdir: Path = WORKDIR,
    export: Optional[Path] = typer.Option(None, "--export",
                                          help="Write a read-only HTML report of the changes to this folder instead of serving."),
    audit: int = typer.Option(0, "--audit", min=0, help="Also list a random sample of this many kept images (action "
                              "filter 'audit'): a relabelled one is an error the machine missed, which `tune` counts."),
    audit_seed: int = typer.Option(0, "--audit-seed", help="The seed of the audit sample (the same seed, the same images)."),
) -> None:
    """Review a split's changes in the browser; verdicts go to reviews/<split>.csv, which `dvc repro` applies."""
    if export is not None:
        from ..review.data import ReviewData
        from ..review.export import export_html

        r = export_html(ReviewData(workdir, split), export)
        typer.echo(f"{split}: {r['changes']} changes in {r['pages']} pages; open {r['index']}")
        return
    from ..review.server import serve

    serve(workdir, split, host=host, port=port, echo=typer.echo, audit=audit, audit_seed=audit_seed)


def review_metrics(
    workdir: Path = WORKDIR,
) -> None:
    """Write metrics/review.json: reviewed changes, and the machine's precision per rule as the reviewers judged it."""
    from ..stages import review as stage
    from ..workspace import Workspace

    m = stage.run(None, Workspace(workdir))
    per = "; ".join(f"{s}: {v['reviewed']} of {v['changes']} changes reviewed, {len(v['stale'])} stale"
                    for s, v in m["splits"].items())
    typer.echo(f"metrics/review.json: {per or 'no decisions'}")


def tune(
    split: str = typer.Option("val", "--split", help="The split whose reviews to tune on (train, val or v2)."),
    param: str = typer.Option("h1,h2,h3", "--param", help="The thresholds to vary, comma-separated (each over every "
                              "count of models 1..|M| unless --grid names it)."),
    grid: List[str] = typer.Option([], "--grid", help="NAME=V1,V2,... values to try for a threshold (counts, fractions "
                                   "of |M| or all), e.g. --grid h3=2,3,4; repeatable."),
    cams: bool = typer.Option(False, "--cams/--no-cams", help="Compute the CAMs that settings need and the decisions "
                              "lack (through the CAM score cache); without it those samples are reported undecided."),
    top: int = typer.Option(15, "--top", min=1, help="Settings shown, best first (the current and the proposed always)."),
    params: Path = PARAMS,
) -> None:
    """Agreement with the reviewers (reviews/<split>.csv) of each threshold setting, replayed from the clean stage's
    evidence, and the `dvc exp run -S ...` line of the best one."""
    from ..config import load_params
    from ..review.tune import tune_split
    from ..workspace import Workspace

    r = tune_split(load_params(params), Workspace(Path(".")), split, param=param, grid=grid, cams=cams, top=top)
    typer.echo(r.text)


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("review")(review)
    app.command("review-metrics")(review_metrics)
    app.command("tune")(tune)
