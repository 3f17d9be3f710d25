"""`imagenet-clean` commands of the evaluate group: tables, retrain, table3, ablations, report."""
from __future__ import annotations

import json
from pathlib import Path

import typer

PARAMS_HELP = "params.yaml to read"
ROUND_HELP = "cleaning round whose files to read and write (1: data/ and metrics/; r >= 2: data/rounds/r/, metrics/rounds/r/)"


def _setup(params: Path, round: int):
    from ..config import load_params
    from ..evaluate.accuracy import RoundPaths

    p = load_params(params)
    if round > p.rounds:
        raise ValueError(f"--round {round} is beyond rounds: {p.rounds} in {params}")
    return p, RoundPaths(round)


def _echo_skips(table: dict) -> bool:
    """Print a skipped table's reason and its skipped splits; returns whether the whole table was skipped."""
    from ..evaluate.splits import SKIPPED_SPLITS, skip_reason_of

    for split, why in (table.get(SKIPPED_SPLITS) or {}).items():
        typer.echo(f"split {split} skipped: {why}")
    why = skip_reason_of(table)
    if why:
        typer.echo(f"skipped: {why}")
    return why is not None


def _pct(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def tables(
    params: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
    round: int = typer.Option(1, "--round", min=1, help=ROUND_HELP),
) -> None:
    """Table 1: issues found and accuracy of every cleanup model (and tables.extra_models) on original vs cleaned splits."""
    from ..evaluate.splits import table_rows, usable_splits
    from ..evaluate.table1 import predict_extra, write_table1

    p, paths = _setup(params, round)
    splits, skipped = usable_splits(p, paths, predictions=True)
    predict_extra(p, splits, paths=paths)
    out = write_table1(list(p.models), splits, paths=paths, skipped=skipped, extra_models=list(p.tables.extra_models))
    rows = json.loads(out.read_text())
    if not _echo_skips(rows):
        for model, row in table_rows(rows).items():
            cells = [f"{s}: {_pct(row[s]['top1'])}/{_pct(row[s]['top5'])}" for s in row if isinstance(row[s], dict) and "top1" in row[s]]
            typer.echo(f"{model}: issues {row['issues']}; " + "; ".join(cells))
    typer.echo(f"wrote {out}")


def retrain(
    params: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
    round: int = typer.Option(1, "--round", min=1, help=ROUND_HELP),
) -> None:
    """Table 2: train tables.archs on T and T_c over tables.seeds seeds; evaluate on every split (cached, resumable)."""
    from ..evaluate.table2 import headline, write_table2

    p, paths = _setup(params, round)
    out = write_table2(p, paths=paths)
    table = json.loads(out.read_text())
    if not _echo_skips(table):
        for arch, h in headline(table).items():
            g = h["top1"]
            typer.echo(
                f"{arch}: T_c - T top-1 on {h['set']}: {g['gain']} points over {h['seeds']} seed(s) "
                f"(seed spread {g['spread']}; beyond the spread: {g['beyond_spread']})"
            )
    typer.echo(f"wrote {out}")


def table3(
    params: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
    round: int = typer.Option(1, "--round", min=1, help=ROUND_HELP),
) -> None:
    """Table 3 (tables.resolutions): T_c models at non-square input sizes vs the square model."""
    from ..evaluate.table3 import write_table3

    p, paths = _setup(params, round)
    out = write_table3(p, paths=paths)
    _echo_skips(json.loads(out.read_text()))
    typer.echo(f"wrote {out}")


def ablations(
    params: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
    round: int = typer.Option(1, "--round", min=1, help=ROUND_HELP),
) -> None:
    """Ablations (tables.ablations): train on T with only fixes, only removals, only merges, all."""
    from ..evaluate.ablations import write_ablations

    p, paths = _setup(params, round)
    out = write_ablations(p, paths=paths)
    _echo_skips(json.loads(out.read_text()))
    typer.echo(f"wrote {out}")


def report(params: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP)) -> None:
    """Render every computed table (all rounds) as metrics/report.md, and the changes-per-class plot data."""
    from ..config import load_params
    from ..evaluate.report import write_report

    p = load_params(params)
    splits = [name for name, sc in p.splits.items() if sc.root is not None]  # skipped splits' decision files are ignored too
    typer.echo(f"wrote {write_report(splits, rounds=p.rounds)}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("tables")(tables)
    app.command("retrain")(retrain)
    app.command("table3")(table3)
    app.command("ablations")(ablations)
    app.command("report")(report)
