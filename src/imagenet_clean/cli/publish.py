"""`imagenet-clean` commands of the publish group."""
from __future__ import annotations

import json
from pathlib import Path

import typer


def apply(
    clean: Path = typer.Option(..., "--clean", help="Clean manifest, e.g. data/clean/val.parquet (after `dvc pull data/clean`)."),
    root: Path = typer.Option(..., "--root", help="Your copy of the ORIGINAL split (the folder ingestion read)."),
    out: Path = typer.Option(..., "--out", help="New dataset folder (absent, empty, or made by an earlier apply)."),
    mode: str = typer.Option("symlink", "--mode", help="symlink | hardlink | copy"),
    deepaugment: bool = typer.Option(False, "--deepaugment", help="Also take <stem>_CAE/<stem>_EDSR copies, following <stem>'s decision."),
    hash_check: bool = typer.Option(True, "--hash/--no-hash", help="Compare content hashes where recorded (sizes are always compared)."),
    decisions: Path | None = typer.Option(None, "--decisions", help="Decisions table, for per-rule counts in the dataset card."),
    problems: Path | None = typer.Option(None, "--problems", help="Where to write the list of mismatching source files [default: <out>.refused.tsv]."),
    workers: int = typer.Option(4, "--workers", min=1, help="Threads for hashing and linking."),
) -> None:
    """Build the cleaned ImageFolder tree <out>/<wnid>/<file> from a clean manifest and your original split.

    Refuses (and lists the files in --problems) when a source file is missing or
    differs from the manifest. Safe to rerun: correct entries are kept. Prints the
    counts as JSON on the last line.
    """
    from ..publish.apply import LINK_MODES, SourceMismatchError, apply_clean, format_problems

    if mode not in LINK_MODES:
        raise typer.BadParameter(f"{mode!r} is not one of {', '.join(LINK_MODES)}", param_hint="--mode")
    try:
        counts = apply_clean(
            clean, root, out, mode=mode, deepaugment=deepaugment, check_hash=hash_check, decisions=decisions, workers=workers
        )
    except SourceMismatchError as e:
        from ..io import write_text

        dest = problems or out.with_name(out.name + ".refused.tsv")
        write_text(dest, format_problems(e.problems))
        raise ValueError(f"{e} (full list: {dest})") from None
    typer.echo(json.dumps(counts, sort_keys=True))


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("apply")(apply)
