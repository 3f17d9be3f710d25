"""Stage ``rounds``: cleaning rounds 2 .. ``rounds``, each a loop over the pipeline's own stage functions.

Round ``r`` runs :func:`round_stages` in ``Workspace(round=r)``: the fit, predict,
clean and table stages write under ``data/rounds/<r>/`` and ``metrics/rounds/<r>/``
exactly as round 1 writes under ``data/`` and ``metrics/``, so a stage added to
the pipeline is added to every round here. See :mod:`imagenet_clean.evaluate.rounds`
for what a round trains on.
"""
from __future__ import annotations

import logging
import shutil
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa

from ..config import Params
from ..evaluate.accuracy import CLEANED_SPLITS, TRAIN_SPLIT
from ..io import read_metadata, read_table, write_json, write_table, write_text
from ..workspace import Workspace
from . import ablations, clean, fit, predict, retrain, table3, tables, windows
from .common import merge_spec, project_classes

log = logging.getLogger(__name__)

MARKER = "README.md"
"""File written into ``data/rounds`` and ``metrics/rounds`` so that both exist as DVC outputs."""

MARKER_TEXT = (
    "# Cleaning rounds\n\n"
    "Written by `imagenet-clean rounds`. Round 1 is the pipeline's own outputs; round r >= 2 "
    "(params.yaml `rounds`) lives in the folder `<r>/` here: it retrains the cleanup models on round "
    "r-1's cleaned training set and cleans again.\n"
)

Stage = Callable[[Params, Workspace], object]


def round_stages(params: Params, *, cam: bool | None = None, n_jobs: int | None = 1) -> list[tuple[str, Stage]]:
    """The stages a round runs, in dvc.yaml order, each a function of ``(params, ws)``.

    ``fit@<model>`` for every model, ``predict@<split>`` for every evaluated split,
    ``clean@<split>`` for the training split and the cleaned evaluated splits, then
    ``tables``, ``retrain``, ``table3`` and ``ablations``.
    """
    steps: list[tuple[str, Stage]] = [(f"fit@{m}", partial(fit.run, model=m)) for m in params.models]
    steps += [(f"predict@{s}", partial(predict.run, split=s)) for s in params.splits if s != TRAIN_SPLIT]
    if params.label_sets.enabled:  # the round's own models read the windows (label-set evidence)
        steps += [(f"windows@{s}", partial(windows.run, split=s)) for s in (TRAIN_SPLIT, *CLEANED_SPLITS)]
    steps += [(f"clean@{s}", partial(clean.run, split=s, cam=cam, n_jobs=n_jobs)) for s in (TRAIN_SPLIT, *CLEANED_SPLITS)]
    steps += [("tables", tables.run), ("retrain", retrain.run), ("table3", table3.run), ("ablations", ablations.run)]
    return steps


def write_round_manifest(params: Params, ws: Workspace) -> Path:
    """Derive and write round ``ws.round``'s training manifest from the previous round's clean one; returns its path.

    See :func:`imagenet_clean.evaluate.rounds.round_training_manifest`. Its metadata is the
    original manifest's (root, layout, classes) plus ``round`` and ``source``.

    Raises:
        FileNotFoundError: the original training manifest or the previous round's clean one is missing.
        ValueError: the previous round's training split was skipped.
    """
    from ..cleanup.merges import apply_merges, load_merges
    from ..evaluate.rounds import round_training_manifest

    orig_path, prev = ws.manifest(TRAIN_SPLIT), ws.input(TRAIN_SPLIT)
    before = f"`imagenet-clean clean --split {TRAIN_SPLIT}`" if ws.round == 2 else f"round {ws.round - 1} (`imagenet-clean rounds`)"
    for path, how in ((orig_path, f"`imagenet-clean ingest --split {TRAIN_SPLIT}`"), (prev, before)):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (run {how} first)")
    if read_metadata(prev).get("skipped") == "true":
        raise ValueError(f"{prev} was written for a skipped training split: round {ws.round} has nothing to train on")
    meta = read_metadata(orig_path)
    classes = project_classes(meta, params, ws)
    merges = load_merges(merge_spec(params, ws), classes)
    manifest = read_table(orig_path)
    labels = np.arange(len(classes), dtype=np.int64)
    final, _ = apply_merges(labels, merges, classes)
    merged = {int(a): int(b) for a, b in zip(labels, final) if a != b}
    out = round_training_manifest(manifest, read_table(prev), merged_labels=merged, source=str(prev))
    path = ws.round_manifest(TRAIN_SPLIT)
    schema = pa.Schema.from_pandas(manifest, preserve_index=False)
    write_table(path, pa.Table.from_pandas(out, schema=schema, preserve_index=False),
                metadata={**meta, "round": str(ws.round), "source": str(prev)})
    return path


def reset_round(ws: Workspace, models: Sequence[str]) -> None:
    """Remove a round's earlier outputs except the checkpoints of configured models (they resume by fingerprint)."""
    d = ws.round_data
    if d.is_dir():
        for child in d.iterdir():
            if child.name != "models":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    if ws.models.is_dir():
        for child in ws.models.iterdir():
            if child.name not in models:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    shutil.rmtree(ws.round_metrics, ignore_errors=True)


def run_round(params: Params, ws: Workspace, *, cam: bool | None = None, n_jobs: int | None = 1) -> dict:
    """Run cleaning round ``ws.round >= 2``: its training manifest, then :func:`round_stages` in ``ws``.

    Returns:
        ``{"round", "n_train", "fit": {model: top-1}, "clean": {split: counts}, "tables": [paths]}``.

    Raises:
        ValueError: round 1 (the pipeline's own stages), no models, or see the stages' own errors.
        FileNotFoundError: the previous round's clean training manifest is missing.
    """
    if ws.round < 2:
        raise ValueError(f"round 1 is the pipeline's own stages; `rounds` runs rounds >= 2, got {ws.round}")
    if not params.models:
        raise ValueError("params.yaml lists no models; a cleaning round needs at least one")
    reset_round(ws, list(params.models))
    manifest = write_round_manifest(params, ws)
    n_train = int(len(read_table(manifest, columns=["sample_id"])))
    log.info("round %d: %d training images from %s", ws.round, n_train, ws.input(TRAIN_SPLIT))
    summary: dict = {"round": ws.round, "n_train": n_train, "fit": {}, "clean": {}, "tables": []}
    for name, stage in round_stages(params, cam=cam, n_jobs=n_jobs):
        res = stage(params, ws)
        kind, _, item = name.partition("@")
        if kind == "fit":
            summary["fit"][item] = None if res is None else res.get("top1")
        elif kind == "clean":
            summary["clean"][item] = {k: res.get(k) for k in ("samples", "keep", "fix", "remove", "skipped") if k in res}
        elif kind != "predict":
            summary["tables"].append(str(res))
    return summary


def remove_stale_rounds(ws: Workspace, rounds: int) -> list[Path]:
    """Delete the folders of rounds beyond ``rounds`` (from an earlier, larger setting); returns them."""
    gone = []
    for base in (ws.rounds_data, ws.rounds_metrics):
        if not base.is_dir():
            continue
        for child in sorted(base.iterdir()):
            if child.is_dir() and child.name.isdigit() and int(child.name) > rounds:
                shutil.rmtree(child)
                gone.append(child)
    return gone


def run(params: Params, ws: Workspace, *, cam: bool | None = None, n_jobs: int | None = 1) -> list[dict]:
    """Rounds 2 .. ``params.rounds`` one after another (none when ``rounds`` is 1).

    Always writes ``data/rounds/README.md`` and ``metrics/rounds/README.md`` (so that
    both DVC outputs exist) and removes folders of rounds beyond ``rounds``.

    Returns:
        One :func:`run_round` summary per round (empty for ``rounds: 1``); also written
        to ``metrics/rounds/summary.json``.

    Raises:
        ValueError: ``params.rounds < 1``.
    """
    rounds = int(params.rounds)
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {params.rounds!r}")
    for base in (ws.rounds_data, ws.rounds_metrics):
        write_text(base / MARKER, MARKER_TEXT)
    for p in remove_stale_rounds(ws, rounds):
        log.info("removed %s (rounds is %d)", p, rounds)
    out = [run_round(params, ws.at_round(r), cam=cam, n_jobs=n_jobs) for r in range(2, rounds + 1)]
    write_json(ws.rounds_metrics / "summary.json", {"rounds": rounds, "per_round": out})
    return out
