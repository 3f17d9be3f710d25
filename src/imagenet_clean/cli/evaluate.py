"""`imagenet-clean` commands of the evaluate group: tables, retrain, table3, ablations, report, headline."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from .options import PARAMS, ROUND, load


def _echo_skips(table: dict) -> bool:
    """Print a skipped table's reason and its skipped splits; returns whether the whole table was skipped."""
    from ..evaluate.splits import SKIPPED_SPLITS, skip_reason_of

    for split, why in (table.get(SKIPPED_SPLITS) or {}).items():
        typer.echo(f"split {split} skipped: {why}")
    why = skip_reason_of(table)
    if why:
        typer.echo(f"skipped: {why}")
    return why is not None


def _run_and_echo(run, params: Path, round: int) -> None:
    """Run a table stage in ``round`` and print its skips and where it wrote."""
    out = run(*load(params, round))
    _echo_skips(json.loads(out.read_text()))
    typer.echo(f"wrote {out}")


def _pct(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def tables(
    params: Path = PARAMS,
    round: int = ROUND,
) -> None:
    """Table 1: issues found and accuracy of every cleanup model (and tables.extra_models) on original vs cleaned splits."""
    from ..evaluate.splits import table_rows
    from ..stages import tables as stage

    out = stage.run(*load(params, round))
    rows = json.loads(out.read_text())
    if not _echo_skips(rows):
        for model, row in table_rows(rows).items():
            cells = [f"{s}: {_pct(row[s]['top1'])}/{_pct(row[s]['top5'])}" for s in row if isinstance(row[s], dict) and "top1" in row[s]]
            typer.echo(f"{model}: issues {row['issues']}; " + "; ".join(cells))
    typer.echo(f"wrote {out}")


def retrain(
    params: Path = PARAMS,
    round: int = ROUND,
) -> None:
    """Table 2: train tables.archs on T and T_c over tables.seeds seeds; evaluate on every split (cached, resumable)."""
    from ..evaluate.table2 import headline, verdict_line
    from ..stages import retrain as stage

    out = stage.run(*load(params, round))
    table = json.loads(out.read_text())
    if not _echo_skips(table):
        for arch, h in headline(table).items():
            typer.echo(f"{arch}: {verdict_line(h)}")
    typer.echo(f"wrote {out}")


def table3(
    params: Path = PARAMS,
    round: int = ROUND,
) -> None:
    """Table 3 (tables.resolutions): T_c models at non-square input sizes vs the square model."""
    from ..stages import table3 as stage

    _run_and_echo(stage.run, params, round)


def ablations(
    params: Path = PARAMS,
    round: int = ROUND,
) -> None:
    """Ablations (tables.ablations): train on T with only fixes, only removals, only merges, all."""
    from ..stages import ablations as stage

    _run_and_echo(stage.run, params, round)


def report(params: Path = PARAMS) -> None:
    """Render every computed table (all rounds) as metrics/report.md, and the changes-per-class plot data."""
    from ..stages import report as stage

    typer.echo(f"wrote {stage.run(*load(params))}")


def headline() -> None:
    """Write metrics/headline.json (the figures `dvc exp show` compares) and metrics/plots/headline.csv from the metrics files."""
    from ..stages import headline as stage
    from ..workspace import Workspace

    out = stage.run(None, Workspace(Path(".")))
    head = json.loads(out.read_text())
    typer.echo(f"wrote {out}: {len(head)} figures")


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("tables")(tables)
    app.command("retrain")(retrain)
    app.command("table3")(table3)
    app.command("ablations")(ablations)
    app.command("report")(report)
    app.command("headline")(headline)
