"""`imagenet-clean` commands of the publish group."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def apply(
    clean: Optional[Path] = typer.Option(None, "--clean", help="Clean manifest, e.g. data/clean/val.parquet (after `dvc pull clean`)."),
    source: Optional[str] = typer.Option(None, "--from", help="Instead of --clean: a release <repo-url-or-path>[@rev]; its clean manifest "
                                          "of --split is fetched with DVC and checked against its dvc.lock."),
    split: Optional[str] = typer.Option(None, "--split", help="With --from: the split (train, val, v2)."),
    root: Path = typer.Option(..., "--root", help="Your copy of the ORIGINAL split (the folder ingestion read)."),
    out: Path = typer.Option(..., "--out", help="New dataset folder (absent, empty, or made by an earlier apply)."),
    mode: str = typer.Option("symlink", "--mode", help="symlink | hardlink | copy"),
    deepaugment: bool = typer.Option(False, "--deepaugment", help="Also take <stem>_CAE/<stem>_EDSR copies, following <stem>'s decision."),
    hash_check: bool = typer.Option(True, "--hash/--no-hash", help="Compare content hashes where recorded (sizes are always compared)."),
    decisions: Path | None = typer.Option(None, "--decisions", help="Decisions table, for per-rule counts in the dataset card."),
    problems: Path | None = typer.Option(None, "--problems",
                                         help="Where to write the list of mismatching source files (default: <out>.refused.tsv)."),
    workers: int = typer.Option(4, "--workers", min=1, help="Threads for hashing and linking."),
    keep_removed: Path | None = typer.Option(None, "--keep-removed", help="Also put the removed files in this separate tree "
                                             "(<class>/<path>; outside --out and --root; needs --decisions)."),
    label_sets: str = typer.Option("csv", "--label-sets",
                                   help="Images kept with a label set (action relabel_set): csv = under the first label, every set "
                                   "in <out>/label_sets.csv; first = under the first label, no set written; drop = left out."),
) -> None:
    """Build the cleaned ImageFolder tree <out>/<wnid>/<file> from a clean manifest and your original split.

    A folder dataset (init folders) keeps each file's path below its class folder,
    <out>/<class>/<sub/path>; fixes land in their new class folder, name clashes get
    <stem>~<k> and are listed in <out>/renamed.tsv.

    The manifest is a local file (--clean) or is fetched from a published release
    (--from REPO[@REV] --split S), where one that does not match the release's
    dvc.lock is refused.

    Images the cleanup kept with a label set (several plausible classes) go under
    the first class of their set; --label-sets says whether their sets are written
    beside the tree (csv, the default), not written (first), or the images are left
    out (drop). See docs/label-sets.md.

    Refuses (and lists the files in --problems) when a source file is missing or
    differs from the manifest. Safe to rerun: correct entries are kept. Prints the
    counts as JSON on the last line.
    """
    from ..publish.apply import (
        LINK_MODES,
        SourceMismatchError,
        apply_clean,
        check_label_sets_mode,
        format_problems,
    )

    if mode not in LINK_MODES:
        raise typer.BadParameter(f"{mode!r} is not one of {', '.join(LINK_MODES)}", param_hint="--mode")
    if (clean is None) == (source is None):
        raise typer.BadParameter("give either --clean FILE or --from REPO[@REV] --split NAME", param_hint="--clean/--from")
    if source is not None and not split:
        raise typer.BadParameter("--from needs --split (train, val, v2)", param_hint="--split")
    if source is not None and decisions is not None:
        raise typer.BadParameter("--from fetches the release's decisions itself", param_hint="--decisions")
    if source is not None and keep_removed is not None:
        raise typer.BadParameter("--keep-removed works with --clean and --decisions", param_hint="--keep-removed")
    check_label_sets_mode(label_sets)  # one line, exit 1
    kw = dict(mode=mode, deepaugment=deepaugment, check_hash=hash_check, workers=workers, label_sets=label_sets)
    try:
        if source is not None:
            from ..publish.apply_from import apply_from_release
            from ..publish.fetch import split_repo_rev

            counts = apply_from_release(*split_repo_rev(source), split, root, out, **kw)
        else:
            counts = apply_clean(clean, root, out, decisions=decisions, keep_removed=keep_removed, **kw)
    except SourceMismatchError as e:
        from ..io import write_text

        dest = problems or out.with_name(out.name + ".refused.tsv")
        write_text(dest, format_problems(e.problems))
        raise ValueError(f"{e} (full list: {dest})") from None
    typer.echo(json.dumps(counts, sort_keys=True))


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("apply")(apply)
