"""`imagenet-clean` commands of the clean group: clean, clean-arrays, diff, score, suggest-merges, duplicates."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..constants import SKIPPED_WHY
from .options import CAM, JOBS, PARAMS, load


def _threshold(name: str, value: Optional[str]):
    """Parse a threshold as params.yaml would: an integer, a fraction or ``all``."""
    if value is None:
        return None
    v = value.strip()
    if v == "all":
        return v
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an integer, a fraction in (0, 1) or 'all'", param_hint=f"--{name}") from None


def clean(
    split: str = typer.Option(..., "--split", help="The split to clean (a key of `splits` in params.yaml)."),
    params: Path = PARAMS,
    cam: Optional[bool] = CAM,
    jobs: int = JOBS,
) -> None:
    """Decide fixes and removals for a split: data/decisions, data/clean, data/changes, metrics/cleanup.

    Under torchrun (or IMAGENET_CLEAN_LAUNCHER) the CAM work is sharded over the ranks; rank 0 writes.
    """
    from ..models.distributed import process_group
    from ..stages import clean as stage

    p, ws = load(params)
    with process_group() as info:
        m = stage.run(p, ws, split, cam=cam, n_jobs=jobs or None)
    if not info.is_main:
        return
    if m.get("skipped"):
        typer.echo(f"split {split} skipped ({m[SKIPPED_WHY]}): wrote empty decisions, clean manifest and change list")
        return
    typer.echo(f"{split}: {m['fix']} fixes, {m['remove']} removals ({m['cam_exempted']} exempted by CAMs), "
               f"{m['merged']} merged, {m['placeholders']} placeholders; issues per model {m['issues_per_model']}")


def clean_arrays(
    ctx: typer.Context,
    labels: Path = typer.Option(..., "--labels", help="Given labels, an (N,) integer .npy file."),
    pred_probs: list[Path] = typer.Option(..., "--pred-probs", help="One (N, K) probability .npy per model; list several after one flag."),
    fn: Optional[float] = typer.Option(None, "--fn", help="cleanlab frac_noise in (0, 1] (default 1)."),
    fn_scope: Optional[str] = typer.Option(None, "--fn-scope", help="Where --fn applies: 'cell' (cleanlab's per-cell "
                                           "arithmetic, default) or 'split' (fn of all a model's flags)."),
    h1: Optional[str] = typer.Option(None, "--h1", help="Models that must flag a fix: count, fraction of |M| or 'all' (default 0.5)."),
    h2: Optional[str] = typer.Option(None, "--h2", help="Distinct candidates that remove: count, fraction or 'all' (default 3)."),
    h3: Optional[str] = typer.Option(None, "--h3", help="Top-5 misses that remove: count, fraction or 'all' (default 0.667)."),
    out: Path = typer.Option(..., "--out", help="Where to write the decisions parquet."),
    jobs: int = JOBS,
) -> None:
    """Run the cleanup rules on your own predictions (no CAMs); last line: JSON counts."""
    from ..cleanup.ensemble import clean_arrays as run
    from ..cleanup.ensemble import write_arrays_decisions
    from ..config import Thresholds, parse_params

    extra = [Path(a) for a in ctx.args]
    bad = [a for a in ctx.args if a.startswith("-")]
    if bad:
        raise typer.BadParameter(f"unknown option {bad[0]!r}")
    files = list(pred_probs) + extra
    given = {k: v for k, v in {"fn": fn, "fn_scope": fn_scope, "h1": _threshold("h1", h1), "h2": _threshold("h2", h2),
                               "h3": _threshold("h3", h3)}.items() if v is not None}
    p = parse_params(given)  # validates the thresholds exactly as params.yaml would
    thresholds = Thresholds(**{k: getattr(p, k) for k in given})
    decisions, counts = run(labels, files, thresholds=thresholds, n_jobs=jobs or None)
    names = list(counts["issues_per_model"])
    write_arrays_decisions(out, decisions, thresholds=thresholds, models=names)
    typer.echo(f"wrote {out}: {len(decisions)} samples, {len(files)} models")
    typer.echo(json.dumps({"fix": counts["fix"], "remove": counts["remove"], "keep": counts["keep"],
                           "issues_per_model": counts["issues_per_model"]}, sort_keys=True))


def diff(
    a: str = typer.Argument(..., help="The old decisions parquet (with --rev: the old release's git revision)."),
    b: str = typer.Argument(..., help="The new decisions parquet (with --rev: the new release's git revision)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the differences as CSV."),
    limit: int = typer.Option(50, "--limit", min=0, help="Rows to print (0: all)."),
    rev: bool = typer.Option(False, "--rev", help="A and B are releases (tags, commits) of --repo: compare their decisions."),
    repo: str = typer.Option(".", "--repo", help="With --rev: the repository URL or path."),
    split: Optional[List[str]] = typer.Option(None, "--split", help="With --rev: splits to compare (default: every split both have)."),
) -> None:
    """List what changed between two decision tables (matched by sample id, then content hash).

    With --rev, A and B are two releases: each split's decisions are fetched with
    DVC (checked against each release's dvc.lock) and compared, and the clean
    stage's params that differ are shown. --out then names a folder (one CSV per split).
    """
    from ..cleanup.diff import diff_files, summarize
    from ..io import write_text

    if rev:
        from ..publish.release_diff import diff_releases

        for sd in diff_releases(repo, a, b, list(split) if split else None):
            if out is not None:
                write_text(out / f"{sd.split}.csv", sd.rows.to_csv(index=False, lineterminator="\n"))
            typer.echo(f"== {sd.split}: {a} -> {b}")
            for key, (va, vb) in sd.params.items():
                typer.echo(f"param {key}: {va!r} -> {vb!r}")
            if len(sd.rows):
                typer.echo((sd.rows if not limit else sd.rows.head(limit)).to_string(index=False))
            typer.echo(json.dumps({"split": sd.split, **sd.summary}, sort_keys=True))
        return
    if split:
        raise typer.BadParameter("--split needs --rev", param_hint="--split")
    d = diff_files(Path(a), Path(b))
    if out is not None:
        write_text(out, d.to_csv(index=False, lineterminator="\n"))
    if len(d):
        typer.echo((d if not limit else d.head(limit)).to_string(index=False))
    typer.echo(json.dumps(summarize(d), sort_keys=True))


def score(params: Path = PARAMS) -> None:
    """Score the decisions against the truth (embedded default) or ImageNet ReaL: metrics/detection.json."""
    from ..stages import score as stage

    res = stage.run(*load(params))
    for split, s in res.get("splits", {}).items():
        typer.echo(f"{split}: fix P/R/F1 {s['fix']['precision']:.3f}/{s['fix']['recall']:.3f}/{s['fix']['f1']:.3f}, "
                   f"remove {s['remove']['precision']:.3f}/{s['remove']['recall']:.3f}/{s['remove']['f1']:.3f}")
    if "real" in res:
        r = res["real"]
        typer.echo(f"ReaL: {r['fix_confirmed']:.3f} of {r['fixes']} fixes and {r['removal_confirmed']:.3f} of "
                   f"{r['removals']} removals confirmed")


def suggest_merges(params: Path = PARAMS) -> None:
    """Class pairs that every model confuses both ways, for a person to confirm: metrics/merge_suggestions.json."""
    from ..stages import suggest_merges as stage

    res = stage.run(*load(params))
    if res.get("skipped"):
        typer.echo(f"merge suggestions skipped ({res['why']})")
        return
    typer.echo(f"{len(res['pairs'])} class pairs confused both ways by every model (score >= {res['min_rate']}):")
    for p in res["pairs"]:
        mark = " (already merged)" if p["already_merged"] else ""
        typer.echo(f"  {p['a']} {p['a_name']!r} ~ {p['b']} {p['b_name']!r}: score {p['score']:.3f}, "
                   f"fixes {p['fixes']['a_to_b']}/{p['fixes']['b_to_a']}{mark}")


def duplicates(params: Path = PARAMS) -> None:
    """Exact and near copies within and across splits: data/duplicates/<pair>.parquet, metrics/duplicates.json."""
    from ..stages import duplicates as stage

    res = stage.run(*load(params))
    typer.echo(f"duplicates ({res['features']}, max_distance {res['max_distance']}):")
    for name, c in res["pairs"].items():
        leak = " (leakage)" if name in res["leakage"] else ""
        typer.echo(f"  {name}: {c['exact']} exact, {c['near']} near{leak}")
    for split, info in res["splits"].items():
        if info["no_features"]:
            typer.echo(f"  {split}: {info['no_features']} images without features (data/duplicates/no_features.parquet)")
    if "scores" in res:
        a = res["scores"]["all"]
        typer.echo(f"  against the truth's {a['true']} injected pairs: precision {a['precision']}, recall {a['recall']}")


def windows(
    split: str = typer.Option(..., "--split", help="the split whose images to read window by window (splits.SPLIT in params.yaml)"),
    params: Path = PARAMS,
) -> None:
    """Every model's top classes in a grid of windows of each image (label-set evidence): data/windows/SPLIT.parquet."""
    from ..stages import windows as stage

    p, ws = load(params)
    res = stage.run(p, ws, split)
    if res["skipped"]:
        typer.echo(f"windows of {split} skipped ({res['why']}): wrote an empty {ws.windows(split)}")
        return
    typer.echo(f"{ws.windows(split)}: {res['ok']} images x {res['windows']} windows, {res['error']} unreadable")


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("clean")(clean)
    app.command("clean-arrays", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})(clean_arrays)
    app.command("diff")(diff)
    app.command("score")(score)
    app.command("suggest-merges")(suggest_merges)
    app.command("duplicates")(duplicates)
    app.command("windows")(windows)
