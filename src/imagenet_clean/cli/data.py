"""`imagenet-clean` commands of the data group: generate, ingest, quality, verify."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..constants import MAX_IMAGE_PIXELS, SKIPPED_WHY
from .options import PARAMS, load


def generate(params: Path = PARAMS) -> None:
    """Write the embedded mini-ImageNet (generate.* in params.yaml) under generate.out."""
    from ..stages import generate as stage

    p, ws = load(params)
    summary = stage.run(p, ws)
    if not summary["enabled"]:
        typer.echo(f"generate.enabled is false: wrote only {p.generate.out}/classes.tsv")
        return
    for split, s in summary["splits"].items():
        problems = ", ".join(f"{k} {v}" for k, v in sorted(s["problems"].items()))
        typer.echo(f"{split}: {s['n']} images ({problems})")
    typer.echo(f"wrote {p.generate.out} in {summary['seconds']:.1f} s")


def ingest(
    split: Optional[str] = typer.Option(None, "--split", help="stage form: read splits.SPLIT from params.yaml"),
    params: Path = PARAMS,
    root: Optional[Path] = typer.Option(None, "--root", help="image root (instead of --split)"),
    layout: str = typer.Option("folders", "--layout", help="train | val | v2 | folders (with --root)"),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="VOC XML folder, LOC_*_solution.csv or labels file"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="labels file '<file> <wnid|index>' for flat val files"),
    classes: str = typer.Option("imagenet-1k", "--classes", help="imagenet-1k or a wnid<TAB>name TSV (with --root)"),
    out: Optional[Path] = typer.Option(None, "--out", help="manifest parquet to write (with --root)"),
    workers: int = typer.Option(2, "--workers", min=1, help="header-reading processes (with --root)"),
    max_pixels: int = typer.Option(MAX_IMAGE_PIXELS, "--max-pixels", min=1, help="decompression-bomb limit (with --root)"),
    hash: bool = typer.Option(True, "--hash/--no-hash", help="record content hashes (with --root)"),
) -> None:
    """Read a split's image headers and boxes into a manifest parquet."""
    if split is not None:
        if root is not None or out is not None:
            raise typer.BadParameter("give either --split (stage form) or --root/--out, not both")
        from ..stages import ingest as stage

        p, ws = load(params)
        stats = stage.run(p, ws, split)
        if stats["skipped"]:
            typer.echo(f"split {split} skipped ({stats[SKIPPED_WHY]}): wrote an empty {ws.manifest(split)}")
            return
        _echo_stats(stats, str(ws.manifest(split)))
        return
    if root is None or out is None:
        raise typer.BadParameter("give --split SPLIT, or --root DIR --layout L --out FILE.parquet")
    from ..classes import load_classes
    from ..data.ingest import ingest_split, write_manifest

    cl = load_classes(classes)
    df, stats = ingest_split(root, layout=layout, classes=cl, annotations=annotations, labels=labels,
                             workers=workers, max_pixels=max_pixels, hash=hash)
    write_manifest(out, df, root=root, layout=layout, split=out.stem, classes=classes, num_classes=len(cl))
    from ..io import write_json

    write_json(out.with_suffix(".json"), stats)
    _echo_stats(stats, str(out))


def _echo_stats(stats: dict, out: str) -> None:
    errs = ", ".join(f"{k} {v}" for k, v in stats["errors_by_reason"].items()) or "none"
    typer.echo(f"{out}: {stats['n_files']} files, {stats['n_ok']} ok, {stats['n_with_boxes']} with boxes; "
               f"errors: {errs}; annotation errors: {stats['n_annotation_errors']}; {stats['files_per_s']} files/s")
    for e in stats["annotation_errors"][:5]:
        typer.echo(f"  annotation error: {e}", err=True)


def quality(
    split: str = typer.Option(..., "--split", help="the split whose manifest to measure (splits.SPLIT in params.yaml)"),
    params: Path = PARAMS,
) -> None:
    """Measure every image of a split (brightness, contrast, blur, entropy, noise, object size, ...) into data/quality/SPLIT.parquet."""
    from ..stages import quality as stage

    p, ws = load(params)
    stats = stage.run(p, ws, split)
    if stats["skipped"]:
        typer.echo(f"split {split} skipped: wrote an empty {ws.quality(split)}")
        return
    typer.echo(f"{ws.quality(split)}: {stats['n']} images, {stats['ok']} measured, {stats['error']} unreadable "
               f"in {stats['seconds']:.1f} s")


def verify(
    manifest: Path = typer.Argument(..., help="a manifest parquet"),
    root: Optional[Path] = typer.Option(None, "--root", help="image root (default: the one in the manifest)"),
    as_json: bool = typer.Option(False, "--json", help="print the full report as JSON"),
) -> None:
    """Report files missing or changed (size, mtime) since MANIFEST was written; exit 1 if any."""
    from ..data.verify import verify_manifest

    report = verify_manifest(manifest, root=root)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(f"{manifest}: {report['n_files']} files, {report['n_unchanged']} unchanged, "
                   f"{len(report['missing'])} missing, {len(report['changed'])} changed, {len(report['added'])} added")
        for sid in report["missing"][:10]:
            typer.echo(f"  missing: {sid}")
        for c in report["changed"][:10]:
            typer.echo(f"  changed {c['what']}: {c['sample_id']} ({c['was']} -> {c['now']})")
        for sid in report["added"][:10]:
            typer.echo(f"  added: {sid}")
    if not report["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("generate")(generate)
    app.command("ingest")(ingest)
    app.command("quality")(quality)
    app.command("verify")(verify)
